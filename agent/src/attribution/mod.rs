//! Who did it: cgroup id -> cgroup path -> container and pod; pid -> process.

pub mod cgroup_ids;
pub mod cgroup_path;
pub mod pods;
pub mod process;

pub use cgroup_ids::CgroupPaths;
pub use cgroup_path::{CgroupInfo, CgroupPathError, parse_cgroup_path};
pub use pods::{KubeletPods, PodRef};
pub use process::{ProcInfo, proc_info};
