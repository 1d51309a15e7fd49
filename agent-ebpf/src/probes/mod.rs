//! One probe per file; each entry is thin and calls a `try_...` function.

mod fentry_file_open;
mod file_open;
mod lsm_file_open;
mod raw_sys_enter;
mod sock_state;
mod syscall_open;
mod tp_btf_sock_state;
mod tp_open;
mod tp_openat;
mod tp_openat2;
mod tp_sock_state;
