//! given / when / then for deciders:
//! `TestHarness::<Session>::given([..]).when(cmd).then([..])`. Public so
//! that tests outside this crate state a rule the same way.

use std::marker::PhantomData;

use witness_schemas::Event;

use super::{Decider, DomainError};

pub struct TestHarness<D: Decider> {
    state: D::State,
    _d: PhantomData<D>,
}

#[derive(Debug)]
pub struct Outcome(Result<Vec<Event>, DomainError>);

impl<D: Decider> std::fmt::Debug for TestHarness<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHarness").field("state", &self.state).finish()
    }
}

impl<D: Decider> TestHarness<D> {
    pub fn given(history: impl IntoIterator<Item = Event>) -> Self {
        let history: Vec<Event> = history.into_iter().collect();
        Self { state: D::fold(&history), _d: PhantomData }
    }

    pub fn when(self, command: D::Command) -> Outcome {
        Outcome(D::decide(&self.state, command))
    }
}

impl Outcome {
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = Event>) {
        let expected: Vec<Event> = expected.into_iter().collect();
        assert_eq!(self.0, Ok(expected));
    }

    #[track_caller]
    pub fn then_error(self, expected: DomainError) {
        assert_eq!(self.0, Err(expected));
    }

    /// For outcomes with generated parts: the events, to inspect.
    #[track_caller]
    pub fn events(self) -> Vec<Event> {
        self.0.expect("command refused")
    }

    #[track_caller]
    pub fn refused(self) -> DomainError {
        self.0.expect_err("command accepted")
    }
}
