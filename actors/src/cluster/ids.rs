//! Consultation ids for an instance that shares its database: ranges reserved in the
//! database (unique across instances), handed out from memory. The next range is fetched
//! in the background when half of the current one is used, so the booking path never
//! waits for the database for an id.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{EngineError, StoreError};
use crate::model::ConsultationId;

use super::store::ClusterStore;

pub(crate) struct IdPool {
    store: Arc<dyn ClusterStore>,
    block: u32,
    ranges: Mutex<Ranges>,
    refilling: AtomicBool,
}

struct Ranges {
    current: Range<ConsultationId>,
    spare: Option<Range<ConsultationId>>,
}

impl IdPool {
    /// Reserves the first two ranges of `block` ids.
    pub(crate) async fn start(
        store: Arc<dyn ClusterStore>,
        block: u32,
    ) -> Result<Arc<Self>, StoreError> {
        let first = reserve(store.as_ref(), block).await?;
        let spare = reserve(store.as_ref(), block).await?;
        Ok(Arc::new(Self {
            store,
            block,
            ranges: Mutex::new(Ranges {
                current: first,
                spare: Some(spare),
            }),
            refilling: AtomicBool::new(false),
        }))
    }

    /// The next id; `Unavailable` only if both ranges ran out before the database answered.
    pub(crate) fn next(self: &Arc<Self>) -> Result<ConsultationId, EngineError> {
        let (id, low) = {
            let mut r = self.ranges.lock().unwrap_or_else(|p| p.into_inner());
            if r.current.is_empty() {
                if let Some(spare) = r.spare.take() {
                    r.current = spare;
                }
            }
            let id = r.current.next().ok_or_else(|| {
                EngineError::Unavailable("consultation ids are being reserved; retry".into())
            })?;
            (id, r.spare.is_none())
        };
        if low && !self.refilling.swap(true, Ordering::AcqRel) {
            let pool = Arc::clone(self);
            tokio::spawn(async move {
                let result = reserve(pool.store.as_ref(), pool.block).await;
                match result {
                    Ok(range) => {
                        pool.ranges.lock().unwrap_or_else(|p| p.into_inner()).spare = Some(range)
                    }
                    Err(e) => tracing::warn!(error = %e, "reserving consultation ids failed"),
                }
                pool.refilling.store(false, Ordering::Release);
            });
        }
        Ok(id)
    }
}

async fn reserve(
    store: &dyn ClusterStore,
    block: u32,
) -> Result<Range<ConsultationId>, StoreError> {
    let first = store.allocate_consultation_ids(block).await?;
    Ok(first..first + i64::from(block))
}
