//! The maps shared by the probes (names from `credtrail_common::maps`).

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use credtrail_common::{
    COUNTERS_LEN, Counter, EVENTS_BYTES, EndpointKey, FILTER_ENTRIES, NAME_LEN, PENDING_ENTRIES,
    PREFIX_LEN, PendingConnect,
};

#[map]
pub static CT_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map]
pub static CT_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

#[map]
pub static CT_PREFIXES: LpmTrie<[u8; PREFIX_LEN], u32> =
    LpmTrie::with_max_entries(FILTER_ENTRIES, 0);

#[map]
pub static CT_NAMES: HashMap<[u8; NAME_LEN], u32> = HashMap::with_max_entries(FILTER_ENTRIES, 0);

#[map]
pub static CT_SUFFIXES: HashMap<[u8; NAME_LEN], u32> = HashMap::with_max_entries(FILTER_ENTRIES, 0);

#[map]
pub static CT_ENDPOINTS: HashMap<EndpointKey, u32> = HashMap::with_max_entries(FILTER_ENTRIES, 0);

/// Keyed by the `struct sock *` of the connecting socket.
#[map]
pub static CT_PENDING: LruHashMap<u64, PendingConnect> =
    LruHashMap::with_max_entries(PENDING_ENTRIES, 0);

/// Adds one to a per-CPU counter.
#[inline(always)]
pub fn count(c: Counter) {
    if let Some(p) = CT_COUNTERS.get_ptr_mut(c as u32) {
        // SAFETY: per-CPU slot, this program runs with preemption disabled
        // for its duration on this CPU.
        unsafe { *p += 1 };
    }
}
