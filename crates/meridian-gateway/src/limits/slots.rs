//! A tenant's `max_concurrent` on this replica, taken from the request head
//! before the body is buffered: the shared count (memory or Redis) needs
//! the body's token estimate, but memory is held from the first byte read,
//! so a tenant's bodies in flight are bounded here first.

use std::collections::HashMap;
use std::sync::Arc;

use meridian_config::Tenant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Refused;

/// One semaphore per tenant with `max_concurrent`, sized to it.
#[derive(Debug, Default)]
pub struct Slots {
    by_tenant: parking_lot::Mutex<HashMap<String, (u64, Arc<Semaphore>)>>,
}

impl Slots {
    /// A slot for one request of `tenant` (`None` when it has no
    /// `max_concurrent`), or the refusal when all are taken.
    pub fn take(&self, tenant: &Tenant) -> Result<Option<OwnedSemaphorePermit>, Refused> {
        let Some(limit) = tenant.limits.max_concurrent else {
            return Ok(None);
        };
        let sem = {
            let mut map = self.by_tenant.lock();
            let entry = map
                .entry(tenant.name.clone())
                .or_insert_with(|| (limit, Arc::new(Semaphore::new(permits(limit)))));
            if entry.0 != limit {
                // A reload changed the limit: requests under way keep their
                // permits of the old semaphore.
                *entry = (limit, Arc::new(Semaphore::new(permits(limit))));
            }
            entry.1.clone()
        };
        sem.try_acquire_owned()
            .map(Some)
            .map_err(|_| Refused::Concurrency { limit })
    }
}

fn permits(limit: u64) -> usize {
    usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_tenant_holds_at_most_its_limit_and_others_are_unaffected() {
        let slots = Slots::default();
        let mut a = Tenant::implicit();
        a.name = "a".into();
        a.limits.max_concurrent = Some(2);
        let b = Tenant::implicit();
        let one = slots.take(&a).unwrap();
        let two = slots.take(&a).unwrap();
        assert!(one.is_some() && two.is_some());
        assert_eq!(
            slots.take(&a).unwrap_err(),
            Refused::Concurrency { limit: 2 }
        );
        assert!(slots.take(&b).unwrap().is_none(), "no limit, no slot");
        drop(one);
        assert!(slots.take(&a).unwrap().is_some());
        a.limits.max_concurrent = Some(3);
        assert!(
            slots.take(&a).unwrap().is_some(),
            "a new limit, a new count"
        );
    }
}
