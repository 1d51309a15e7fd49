//! A minimal reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`), enough
//! to find struct member offsets. The eBPF programs are built without CO-RE,
//! so the loader passes these offsets to them at load time (they differ
//! between kernels: 6.1 in the VM, 6.18 here).

use std::collections::HashMap;

use credtrail_common::KernelConfig;

/// Why BTF could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("BTF has no struct {0}")]
    NoStruct(String),
    #[error("BTF struct {ty} has no member {member}")]
    NoMember { ty: String, member: String },
    #[error("BTF member {0} is a bitfield")]
    Bitfield(String),
    #[error("system-call numbers are not known for the {0} architecture")]
    Unsupported(&'static str),
}

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    kind: u32,
    name_off: u32,
    /// Target type for modifiers and typedefs.
    target: u32,
    members: Vec<Member>,
}

/// Parsed BTF: types and strings.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs: HashMap<String, u32>,
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(BtfError::Malformed("truncated"))
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        let path = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&data)
    }

    /// Parses raw (little-endian) BTF.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < 24 || data[0..2] != [0x9f, 0xeb] {
            return Err(BtfError::Malformed("bad magic"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let tys = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section out of range"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of range"))?
            .to_vec();
        // Type id 0 is void.
        let mut types = vec![Type {
            kind: 0,
            name_off: 0,
            target: 0,
            members: Vec::new(),
        }];
        let mut off = 0;
        while off < tys.len() {
            let name_off = u32_at(tys, off)?;
            let info = u32_at(tys, off + 4)?;
            let size_or_type = u32_at(tys, off + 8)?;
            off += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kflag = info >> 31 == 1;
            let mut members = Vec::new();
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => off += 4,
                KIND_ARRAY => off += 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = off + i * 12;
                        let raw = u32_at(tys, m + 8)?;
                        members.push(Member {
                            name_off: u32_at(tys, m)?,
                            type_id: u32_at(tys, m + 4)?,
                            bit_offset: if kflag { raw & 0xff_ffff } else { raw },
                        });
                    }
                    off += vlen * 12;
                }
                KIND_ENUM | KIND_FUNC_PROTO => off += vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => off += vlen * 12,
                0 | 20.. => return Err(BtfError::Malformed("unknown type kind")),
                _ => {}
            }
            types.push(Type {
                kind,
                name_off,
                target: size_or_type,
                members,
            });
        }
        let mut btf = Self {
            types,
            strings,
            structs: HashMap::new(),
        };
        let mut structs = HashMap::new();
        for (id, t) in btf.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && t.name_off != 0 {
                let name = btf.name(t.name_off).to_owned();
                // Keep the first (the complete one; dedup leaves one per name).
                structs.entry(name).or_insert(id as u32);
            }
        }
        btf.structs = structs;
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// Follows typedefs and modifiers to a struct/union id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.target
                }
                _ => break,
            }
        }
        id
    }

    /// Bit offset and type of `member` in the struct/union `id`, looking
    /// inside anonymous members.
    fn find_member(&self, id: u32, member: &str) -> Option<(u32, u32)> {
        let t = self.types.get(self.resolve(id) as usize)?;
        if !matches!(t.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for m in &t.members {
            if m.name_off != 0 && self.name(m.name_off) == member {
                return Some((m.bit_offset, m.type_id));
            }
        }
        for m in &t.members {
            if m.name_off == 0
                && let Some((off, ty)) = self.find_member(m.type_id, member)
            {
                return Some((m.bit_offset + off, ty));
            }
        }
        None
    }

    /// Byte offset of `path` (e.g. `["ns", "inum"]`) inside `struct ty`.
    pub fn offset_of(&self, ty: &str, path: &[&str]) -> Result<u32, BtfError> {
        Ok(self.bit_offset_of(ty, path)? / 8)
    }

    /// Bit offset of `path` inside `struct ty`.
    pub fn bit_offset_of(&self, ty: &str, path: &[&str]) -> Result<u32, BtfError> {
        let mut id = *self
            .structs
            .get(ty)
            .ok_or_else(|| BtfError::NoStruct(ty.into()))?;
        let mut bits = 0;
        for m in path {
            let (off, next) = self.find_member(id, m).ok_or_else(|| BtfError::NoMember {
                ty: ty.into(),
                member: path.join("."),
            })?;
            bits += off;
            id = next;
        }
        Ok(bits)
    }
}

/// Fills the `file_*` offsets (LSM/fentry need them) and sets
/// `CONFIG_FILE_OFFSETS`; errors name the missing member.
pub fn file_offsets(btf: &Btf, cfg: &mut KernelConfig) -> Result<(), BtfError> {
    cfg.file_f_path = btf.offset_of("file", &["f_path"])?;
    cfg.file_f_inode = btf.offset_of("file", &["f_inode"])?;
    cfg.file_f_flags = btf.offset_of("file", &["f_flags"])?;
    cfg.path_dentry = btf.offset_of("path", &["dentry"])?;
    cfg.dentry_d_name = btf.offset_of("dentry", &["d_name"])?;
    cfg.qstr_len = btf.offset_of("qstr", &["len"])?;
    cfg.qstr_name = btf.offset_of("qstr", &["name"])?;
    cfg.inode_i_ino = btf.offset_of("inode", &["i_ino"])?;
    cfg.flags |= credtrail_common::CONFIG_FILE_OFFSETS;
    Ok(())
}

/// Fills the `task_*` offsets (parent, mount namespace) and sets
/// `CONFIG_TASK_OFFSETS`.
pub fn task_offsets(btf: &Btf, cfg: &mut KernelConfig) -> Result<(), BtfError> {
    cfg.task_real_parent = btf.offset_of("task_struct", &["real_parent"])?;
    cfg.task_tgid = btf.offset_of("task_struct", &["tgid"])?;
    cfg.task_nsproxy = btf.offset_of("task_struct", &["nsproxy"])?;
    cfg.nsproxy_mnt_ns = btf.offset_of("nsproxy", &["mnt_ns"])?;
    cfg.mnt_ns_inum = btf.offset_of("mnt_namespace", &["ns", "inum"])?;
    cfg.flags |= credtrail_common::CONFIG_TASK_OFFSETS;
    Ok(())
}

/// Fills the `sock_*` offsets (the `tp_btf` connect program needs them) and
/// sets `CONFIG_SOCK_OFFSETS`. `sk_protocol` must be a whole `u16` (it is
/// from 5.6 on; before, a bitfield the program cannot read this way).
pub fn sock_offsets(btf: &Btf, cfg: &mut KernelConfig) -> Result<(), BtfError> {
    let common = |m: &str| btf.offset_of("sock", &["__sk_common", m]);
    cfg.sock_family = common("skc_family")?;
    cfg.sock_num = common("skc_num")?;
    cfg.sock_dport = common("skc_dport")?;
    cfg.sock_daddr = common("skc_daddr")?;
    cfg.sock_rcv_saddr = common("skc_rcv_saddr")?;
    cfg.sock_v6_daddr = common("skc_v6_daddr")?;
    cfg.sock_v6_rcv_saddr = common("skc_v6_rcv_saddr")?;
    let bits = btf.bit_offset_of("sock", &["sk_protocol"])?;
    if bits % 8 != 0 {
        return Err(BtfError::Bitfield("sock.sk_protocol".into()));
    }
    cfg.sock_protocol = bits / 8;
    cfg.flags |= credtrail_common::CONFIG_SOCK_OFFSETS;
    Ok(())
}

/// Fills the system-call numbers of `open`/`openat`/`openat2` and the
/// `pt_regs` offsets of the first three arguments for this architecture
/// (x86-64, arm64), and sets `CONFIG_SYSCALLS`.
pub fn syscall_config(btf: &Btf, cfg: &mut KernelConfig) -> Result<(), BtfError> {
    #[cfg(target_arch = "x86_64")]
    {
        (cfg.nr_open, cfg.nr_openat, cfg.nr_openat2) = (2, 257, 437);
        cfg.regs_arg = [
            btf.offset_of("pt_regs", &["di"])?,
            btf.offset_of("pt_regs", &["si"])?,
            btf.offset_of("pt_regs", &["dx"])?,
        ];
    }
    #[cfg(target_arch = "aarch64")]
    {
        // arm64 never had open(2).
        (cfg.nr_open, cfg.nr_openat, cfg.nr_openat2) = (credtrail_common::NO_SYSCALL, 56, 437);
        let x0 = btf.offset_of("pt_regs", &["regs"])?;
        cfg.regs_arg = [x0, x0 + 8, x0 + 16];
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = btf;
        return Err(BtfError::Unsupported(std::env::consts::ARCH));
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        cfg.flags |= credtrail_common::CONFIG_SYSCALLS;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF gives offsets consistent with its layout.
    #[test]
    fn offsets_from_the_running_kernel() {
        let btf = match Btf::from_sys_fs() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("skipped: no kernel BTF here: {e}");
                return;
            }
        };
        let mut cfg = KernelConfig::ZERO;
        file_offsets(&btf, &mut cfg).unwrap();
        task_offsets(&btf, &mut cfg).unwrap();
        sock_offsets(&btf, &mut cfg).unwrap();
        syscall_config(&btf, &mut cfg).unwrap();
        #[cfg(target_arch = "x86_64")]
        // struct pt_regs { r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di ... }
        assert_eq!(cfg.regs_arg, [14 * 8, 13 * 8, 12 * 8]);
        // struct sock_common starts { union { skc_addrpair; struct { daddr; rcv_saddr } }; ... }
        assert_eq!((cfg.sock_daddr, cfg.sock_rcv_saddr), (0, 4));
        assert!(cfg.sock_dport > cfg.sock_rcv_saddr && cfg.sock_num == cfg.sock_dport + 2);
        assert!(cfg.sock_protocol > cfg.sock_v6_rcv_saddr);
        // struct qstr: { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const char *name; }
        assert_eq!(cfg.qstr_len, 4);
        assert_eq!(cfg.qstr_name, 8);
        // struct path: { struct vfsmount *mnt; struct dentry *dentry; }
        assert_eq!(cfg.path_dentry, 8);
        assert!(cfg.file_f_path > 0 && cfg.task_nsproxy > cfg.task_tgid);
        assert!(matches!(
            btf.offset_of("file", &["no_such_member"]),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.offset_of("no_such_struct_xyz", &["a"]),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            Btf::parse(b"not btf at all, no"),
            Err(BtfError::Malformed(_))
        ));
    }
}
