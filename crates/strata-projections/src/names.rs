//! The streams a projection writes, named as KurrentDB names them (ProjectionNamesBuilder).

use strata_core::StreamName;

use crate::engine::QueryDefinition;
use crate::error::Fault;

/// Where every projection is registered (`$ProjectionCreated`, data = the name).
pub const REGISTRY_STREAM: &str = "$projections-$all";
const PREFIX: &str = "$projections-";

/// The stream names of one projection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectionNames {
    name: String,
    result: String,
    partition_result_pattern: String,
}

impl ProjectionNames {
    /// Names for `name`, with the result streams its query chose.
    pub fn new(name: &str, definition: &QueryDefinition) -> Self {
        Self {
            name: name.to_owned(),
            result: definition
                .result_stream_name
                .clone()
                .unwrap_or_else(|| format!("{PREFIX}{name}-result")),
            partition_result_pattern: definition
                .partition_result_stream_name_pattern
                .clone()
                .unwrap_or_else(|| format!("{PREFIX}{name}-{{0}}-result")),
        }
    }

    /// `$projections-<name>`: the definition (`$ProjectionUpdated`, `$ProjectionDeleted`).
    pub fn definition(name: &str) -> String {
        format!("{PREFIX}{name}")
    }

    /// `$projections-<name>-checkpoint`.
    pub fn checkpoint(&self) -> String {
        Self::checkpoint_of(&self.name)
    }

    /// `$projections-<name>-checkpoint`, whatever the query.
    pub fn checkpoint_of(name: &str) -> String {
        format!("{PREFIX}{name}-checkpoint")
    }

    /// `$projections-<name>-<partition>-checkpoint`: a partition's state.
    pub fn partition_checkpoint(&self, partition: &str) -> String {
        format!("{PREFIX}{}-{partition}-checkpoint", self.name)
    }

    /// The result stream of a partition (the root partition is `""`).
    pub fn result(&self, partition: &str) -> String {
        if partition.is_empty() {
            self.result.clone()
        } else {
            self.partition_result_pattern.replace("{0}", partition)
        }
    }

    /// `$projections-<name>-partitions`: the partition catalog.
    pub fn partitions(&self) -> String {
        format!("{PREFIX}{}-partitions", self.name)
    }

    /// `$projections-<name>-emittedstreams`.
    pub fn emitted_streams(&self) -> String {
        format!("{PREFIX}{}-emittedstreams", self.name)
    }
}

/// `name` as a stream name, or a fault saying which stream could not be named.
pub(crate) fn stream(name: &str) -> Result<StreamName, Fault> {
    StreamName::new(name).map_err(|error| Fault::InvalidQuery {
        reason: format!("cannot write to {name:?}: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_reference() {
        let names = ProjectionNames::new("counts", &QueryDefinition::default());
        assert_eq!(ProjectionNames::definition("counts"), "$projections-counts");
        assert_eq!(names.checkpoint(), "$projections-counts-checkpoint");
        assert_eq!(names.result(""), "$projections-counts-result");
        assert_eq!(names.result("eu"), "$projections-counts-eu-result");
        assert_eq!(
            names.partition_checkpoint("eu"),
            "$projections-counts-eu-checkpoint"
        );
        assert_eq!(names.partitions(), "$projections-counts-partitions");
        assert_eq!(
            names.emitted_streams(),
            "$projections-counts-emittedstreams"
        );
        let chosen = QueryDefinition {
            result_stream_name: Some("totals".into()),
            partition_result_stream_name_pattern: Some("totals-{0}".into()),
            ..QueryDefinition::default()
        };
        let names = ProjectionNames::new("counts", &chosen);
        assert_eq!(names.result(""), "totals");
        assert_eq!(names.result("eu"), "totals-eu");
    }
}
