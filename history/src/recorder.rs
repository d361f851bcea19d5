//! How a harness records a history as it runs: [`Recorder::invoke`] when a call starts,
//! [`Recorder::complete`] when it returns; a call never completed stays
//! [`Outcome::Incomplete`]. The fault schedule adds [`Recorder::reachable`] spans.

use crate::model::{History, InitialFile, Nanos, Op, Operation, Outcome, Reachability, Value};

/// Builds a [`History`]; ids are given in invocation order.
#[derive(Debug, Default)]
pub struct Recorder {
    history: History,
}

impl Recorder {
    pub fn new(seed: impl Into<String>) -> Self {
        Recorder {
            history: History {
                seed: Some(seed.into()),
                ..History::default()
            },
        }
    }

    /// Records that `client` invoked `op` on `session` at `at`; returns its id.
    pub fn invoke(&mut self, client: &str, session: &str, op: Op, at: Nanos) -> u64 {
        let id = self.history.ops.len() as u64;
        self.history.ops.push(Operation {
            id,
            client: client.to_string(),
            session: session.to_string(),
            op,
            invoked: at,
            completed: None,
            outcome: Outcome::Incomplete,
        });
        id
    }

    /// Records how operation `id` ended, at `at`.
    ///
    /// # Panics
    /// If `id` was not returned by [`Recorder::invoke`], or already completed, or `outcome`
    /// is `Incomplete`: these are bugs in the harness, not in what it observes.
    pub fn complete(&mut self, id: u64, at: Nanos, outcome: Outcome) {
        let o = &mut self.history.ops[id as usize];
        assert!(
            o.completed.is_none() && outcome != Outcome::Incomplete,
            "operation #{id} completed twice, or completed as incomplete"
        );
        o.completed = Some(at);
        o.outcome = outcome;
    }

    /// Sets the session of operation `id`: a `CreateSession` is invoked before its session
    /// id exists; record it under the id it returned, so the session checker counts its
    /// lease.
    pub fn set_session(&mut self, id: u64, session: &str) {
        self.history.ops[id as usize].session = session.to_string();
    }

    /// Sets where read `id` was served from: a harness may learn it only when the read
    /// returns (a client-cache hit).
    ///
    /// # Panics
    /// If operation `id` is not a read (a bug in the harness).
    pub fn set_read_source(&mut self, id: u64, served: crate::model::ReadSource) {
        match &mut self.history.ops[id as usize].op {
            Op::Read { source, .. } => *source = served,
            other => panic!("operation #{id} is a {}, not a read", other.name()),
        }
    }

    /// Records a whole call at once.
    pub fn call(
        &mut self,
        client: &str,
        session: &str,
        op: Op,
        invoked: Nanos,
        completed: Nanos,
        outcome: Outcome,
    ) -> u64 {
        let id = self.invoke(client, session, op, invoked);
        self.complete(id, completed, outcome);
        id
    }

    /// Records that `client` could reach a live master or proxy from `from` to `to`.
    pub fn reachable(&mut self, client: &str, from: Nanos, to: Nanos) {
        self.history.reachability.push(Reachability {
            client: client.to_string(),
            from,
            to,
        });
    }

    /// Records a file that existed before the first operation.
    pub fn initial(&mut self, path: &str, value: Value, generation: u64) {
        self.history.initial.push(InitialFile {
            path: path.to_string(),
            value,
            generation,
        });
    }

    /// The history so far (calls not yet completed are incomplete).
    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn finish(self) -> History {
        self.history
    }
}
