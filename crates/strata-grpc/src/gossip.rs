//! `Gossip.Read`: one node, the leader, at the host and port the client used to reach it
//! (the request's `:authority`), so that a client which discovers the node through gossip
//! connects back by the same name (and a TLS certificate for that name still matches).
//! Without an authority, the node's bound address. In a cluster, every registered member
//! with its state (Leader / Follower, or Shutdown when its heartbeat stopped) at the
//! address it advertises, except this node itself: where the client reached it.

use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use strata_core::{EventId, Leadership};
use tonic::codegen::Service;
use tonic::codegen::http::uri::Authority;
use tonic::codegen::http::{self, header};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::convert::{UuidFormat, wire_uuid};
use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::gossip::{
    ClusterInfo, EndPoint, MemberInfo, gossip_server::Gossip, member_info::VNodeState,
};

/// The authority (`host[:port]`) a request was sent to.
#[derive(Clone, Debug)]
struct ReachedAs(Authority);

/// Wraps a service so that its handlers see the request's authority (tonic keeps headers
/// and extensions of a request, not its URI).
#[derive(Clone)]
pub(crate) struct WithAuthority<S>(pub(crate) S);

impl<S: NamedService> NamedService for WithAuthority<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for WithAuthority<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // HTTP/2 carries it in the URI; HTTP/1.1 in the Host header.
        let authority = request.uri().authority().cloned().or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
                .and_then(|host| host.parse::<Authority>().ok())
        });
        if let Some(authority) = authority {
            request.extensions_mut().insert(ReachedAs(authority));
        }
        self.0.call(request)
    }
}

pub(crate) struct SingleNode {
    instance_id: EventId,
    bound: EndPoint,
    /// In a cluster, the members come from here; `None` (or a single-node leadership)
    /// answers this node alone, as the leader.
    leadership: Option<Arc<Leadership>>,
}

impl SingleNode {
    pub(crate) fn new(address: String, port: u16, leadership: Option<Arc<Leadership>>) -> Self {
        Self {
            instance_id: EventId::new_random(),
            bound: EndPoint {
                address,
                port: u32::from(port),
            },
            leadership: leadership.filter(|leadership| !leadership.is_single_node()),
        }
    }

    /// Every registered member with its state; this node as a follower until the
    /// membership has been read once. This node is announced where the client reached it
    /// (`reached`), as a single node is; the others at the addresses they advertise.
    fn cluster_members(
        &self,
        leadership: &Leadership,
        ticks: i64,
        reached: &EndPoint,
    ) -> Vec<MemberInfo> {
        let view = leadership.view();
        if view.members.is_empty() {
            return vec![MemberInfo {
                instance_id: Some(wire_uuid(EventId(view.node_id), UuidFormat::String)),
                time_stamp: ticks,
                state: VNodeState::Follower.into(),
                is_alive: true,
                http_end_point: Some(reached.clone()),
            }];
        }
        view.members
            .iter()
            .map(|member| {
                let state = if member.leader {
                    VNodeState::Leader
                } else if member.alive {
                    VNodeState::Follower
                } else {
                    VNodeState::Shutdown
                };
                MemberInfo {
                    instance_id: Some(wire_uuid(EventId(member.node_id), UuidFormat::String)),
                    time_stamp: ticks,
                    state: state.into(),
                    is_alive: member.alive,
                    http_end_point: Some(if member.node_id == view.node_id {
                        reached.clone()
                    } else {
                        EndPoint {
                            address: member.address.host.clone(),
                            port: u32::from(member.address.port),
                        }
                    }),
                }
            })
            .collect()
    }

    /// Where the client reached this node; the bound address when it did not say.
    fn advertised<T>(&self, request: &Request<T>) -> EndPoint {
        match request.extensions().get::<ReachedAs>() {
            Some(ReachedAs(authority)) if !authority.host().is_empty() => EndPoint {
                address: authority.host().to_owned(),
                port: authority.port_u16().map_or(self.bound.port, u32::from),
            },
            _ => self.bound.clone(),
        }
    }
}

#[tonic::async_trait]
impl Gossip for SingleNode {
    async fn read(&self, request: Request<Empty>) -> Result<Response<ClusterInfo>, Status> {
        let ticks = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_nanos() / 100).unwrap_or(i64::MAX))
            .unwrap_or(0);
        if let Some(leadership) = &self.leadership {
            return Ok(Response::new(ClusterInfo {
                members: self.cluster_members(leadership, ticks, &self.advertised(&request)),
            }));
        }
        Ok(Response::new(ClusterInfo {
            members: vec![MemberInfo {
                instance_id: Some(wire_uuid(self.instance_id, UuidFormat::String)),
                time_stamp: ticks,
                state: VNodeState::Leader.into(),
                is_alive: true,
                http_end_point: Some(self.advertised(&request)),
            }],
        }))
    }
}
