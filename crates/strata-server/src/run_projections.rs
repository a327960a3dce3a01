//! Which projections a node runs: KurrentDB's `--run-projections` (`None`, `System`, `All`).

use std::fmt;
use std::str::FromStr;

/// Which projections the server runs (KurrentDB's `RunProjections`).
///
/// Strata's system projections (`$by_category`, `$by_event_type`, `$stream_by_category`,
/// `$streams`) are its secondary indexes: they are part of the store and always on, whatever
/// this says. So `System` and `None` both run no user projection; the Projections service
/// (gRPC) and `/v1/projections` (HTTP) are then not served: gRPC clients get
/// `UNIMPLEMENTED`, as from a KurrentDB node without the projection subsystem, and the
/// service is not listed in `ServerFeatures`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunProjections {
    /// No user projections.
    None,
    /// The system projections only (Strata's indexes): no user projections.
    System,
    /// User projections too (the default).
    #[default]
    All,
}

impl RunProjections {
    /// True when user projections run (and the Projections service is served).
    pub fn runs_user_projections(self) -> bool {
        self == RunProjections::All
    }

    /// The lower-case name, as a config file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunProjections::None => "none",
            RunProjections::System => "system",
            RunProjections::All => "all",
        }
    }
}

impl fmt::Display for RunProjections {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A value that is not `none`, `system` or `all`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("run_projections is {0:?}; it must be none, system or all")]
pub struct RunProjectionsError(pub String);

impl FromStr for RunProjections {
    type Err = RunProjectionsError;

    /// `none`, `system` or `all`, in any case (KurrentDB writes `None`, `System`, `All`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "none" => Ok(RunProjections::None),
            "system" => Ok(RunProjections::System),
            "all" => Ok(RunProjections::All),
            _ => Err(RunProjectionsError(text.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_in_any_case_and_others_are_refused() {
        for (text, expected) in [
            ("None", RunProjections::None),
            ("none", RunProjections::None),
            ("SYSTEM", RunProjections::System),
            ("All", RunProjections::All),
        ] {
            assert_eq!(text.parse::<RunProjections>(), Ok(expected));
            assert_eq!(expected.as_str().parse::<RunProjections>(), Ok(expected));
        }
        let error = "some".parse::<RunProjections>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "run_projections is \"some\"; it must be none, system or all"
        );
        assert!(RunProjections::All.runs_user_projections());
        assert!(!RunProjections::System.runs_user_projections());
        assert!(!RunProjections::None.runs_user_projections());
    }
}
