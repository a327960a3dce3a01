//! `Gossip.Read`: one node, the leader, at the address the client reached.

use std::time::{SystemTime, UNIX_EPOCH};

use strata_core::EventId;
use tonic::{Request, Response, Status};

use crate::convert::{UuidFormat, wire_uuid};
use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::gossip::{
    ClusterInfo, EndPoint, MemberInfo, gossip_server::Gossip, member_info::VNodeState,
};

pub(crate) struct SingleNode {
    instance_id: EventId,
    advertised: EndPoint,
}

impl SingleNode {
    pub(crate) fn new(address: String, port: u16) -> Self {
        Self {
            instance_id: EventId::new_random(),
            advertised: EndPoint {
                address,
                port: u32::from(port),
            },
        }
    }
}

#[tonic::async_trait]
impl Gossip for SingleNode {
    async fn read(&self, _request: Request<Empty>) -> Result<Response<ClusterInfo>, Status> {
        let ticks = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_nanos() / 100).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Ok(Response::new(ClusterInfo {
            members: vec![MemberInfo {
                instance_id: Some(wire_uuid(self.instance_id, UuidFormat::String)),
                time_stamp: ticks,
                state: VNodeState::Leader.into(),
                is_alive: true,
                http_end_point: Some(self.advertised.clone()),
            }],
        }))
    }
}
