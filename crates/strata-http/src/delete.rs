//! `DELETE /v1/streams/{stream}`: soft delete (appending again revives the stream), or
//! tombstone with `?mode=tombstone` (the name can never be used again).

use axum::Json;
use axum::extract::State;

use crate::extract::{Path, Query};
use serde::{Deserialize, Serialize};
use strata_core::StreamName;

use crate::access::{Access, Operation};
use crate::metadata::parse_expected;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteQuery {
    /// `soft` (default) or `tombstone`.
    mode: Option<String>,
    /// `any` (default), `no-stream`, `exists` or a revision.
    expected_revision: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DeleteOut {
    /// Position of the delete in `$all`.
    position: u64,
}

/// Deletes a stream.
#[utoipa::path(
    delete,
    path = "/v1/streams/{stream}",
    params(("stream" = String, Path, description = "stream name"), DeleteQuery),
    responses(
        (status = 200, description = "deleted", body = DeleteOut),
        (status = 400, description = "bad query", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "wrong expected revision", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "already tombstoned", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "streams"
)]
pub(crate) async fn delete_stream(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    Query(query): Query<DeleteQuery>,
    access: Access,
) -> Result<Json<DeleteOut>, ApiError> {
    let stream = StreamName::new(&stream)?;
    access.check(Operation::Delete(stream.as_str())).await?;
    let expected = parse_expected(query.expected_revision.as_deref())?;
    let result = match query.mode.as_deref() {
        None | Some("soft") => state.store.delete_stream(&stream, expected).await?,
        Some("tombstone") => state.store.tombstone_stream(&stream, expected).await?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "mode {other:?} is neither soft nor tombstone"
            )));
        }
    };
    Ok(Json(DeleteOut {
        position: result.position.0,
    }))
}
