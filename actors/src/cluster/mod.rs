//! Several engine instances on one Postgres database: membership, shard leases with epoch
//! fencing, and where a doctor's requests go.
//!
//! Doctors are split into a fixed number of lease shards (`hash(doctor_id) % shard_count`,
//! default 256). An instance serves a doctor only while it holds the lease of the doctor's
//! shard; every journal and snapshot transaction checks the lease's epoch inside the
//! transaction, so an instance that lost its lease (paused, partitioned) can never commit
//! after another took over.

mod ids;
mod ownership;
mod runtime;
mod store;

pub use ownership::{Ownership, Route};
pub(crate) use runtime::ShardHost;
pub use runtime::{assignment, Cluster, ClusterSettings, ClusterStats};
pub use store::{ClusterStore, ClusterView, Fence, LeaseRow, NodeIdentity, ShardNo};

use crate::model::DoctorId;

/// The default number of lease shards.
pub const DEFAULT_SHARD_COUNT: u32 = 256;

/// The lease shard of a doctor.
pub fn lease_shard(doctor_id: DoctorId, shard_count: u32) -> ShardNo {
    shard_index(doctor_id, shard_count as usize) as ShardNo
}

/// Doctor -> shard: a fixed mix of the id (splitmix64), so neighbouring ids spread out.
pub fn shard_index(doctor_id: DoctorId, shards: usize) -> usize {
    let mut z = (doctor_id as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % shards as u64) as usize
}
