//! Replicated cells on etcd, with real etcd members and real `warren cell`
//! processes killed with SIGKILL: mastership moves to a standby with a higher epoch,
//! writes are fenced, a master cut off from etcd stops serving before anyone else serves,
//! and no acknowledged write is lost; a cell above etcd's transaction limits keeps serving.

mod etcd_limits;
mod fencing;
mod frozen;
mod harness;
mod locks;
mod proxies;
mod replicas;
mod reshard;
