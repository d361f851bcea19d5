//! Which `Warren` RPC carries each request message ([`Rpc`]), so that a call is sent by
//! naming its request alone: the session's retry loop stamps each attempt with the current
//! session context ([`WithContext::with_ctx`]) and sends it with [`Rpc::send`]. The cell's
//! own sessions at other cells send through the same table.

use std::future::Future;
use tonic::transport::Channel;
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::request::WithContext;

/// A request message that carries a session context, and the RPC that sends it.
pub trait Rpc: WithContext + Clone + Send + 'static {
    /// The RPC's response message.
    type Reply: Send;

    /// Sends the request on `client`.
    fn send(
        self,
        client: WarrenClient<Channel>,
    ) -> impl Future<Output = Result<tonic::Response<Self::Reply>, tonic::Status>> + Send;
}

macro_rules! rpcs {
    ($($request:ident => $method:ident -> $reply:ident),* $(,)?) => {$(
        impl Rpc for pb::$request {
            type Reply = pb::$reply;
            fn send(
                self,
                mut client: WarrenClient<Channel>,
            ) -> impl Future<Output = Result<tonic::Response<pb::$reply>, tonic::Status>> + Send {
                async move { client.$method(self).await }
            }
        }
    )*};
}

rpcs!(
    OpenRequest => open -> OpenResponse,
    CloseRequest => close -> CloseResponse,
    CloseSessionRequest => close_session -> CloseSessionResponse,
    GetContentsAndStatRequest => get_contents_and_stat -> GetContentsAndStatResponse,
    GetStatRequest => get_stat -> GetStatResponse,
    ReadDirRequest => read_dir -> ReadDirResponse,
    SetContentsRequest => set_contents -> SetContentsResponse,
    SetAclRequest => set_acl -> SetAclResponse,
    DeleteRequest => delete -> DeleteResponse,
    AcquireRequest => acquire -> AcquireResponse,
    TryAcquireRequest => try_acquire -> AcquireResponse,
    ReleaseRequest => release -> ReleaseResponse,
    GetSequencerRequest => get_sequencer -> GetSequencerResponse,
    SetSequencerRequest => set_sequencer -> SetSequencerResponse,
    CheckSequencerRequest => check_sequencer -> CheckSequencerResponse,
);
