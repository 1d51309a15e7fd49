//! The gRPC `credtrail.query.v1.QueryService`. Each method converts its
//! request at the edge ([`super::convert`]), runs the shared operation in
//! [`super::ops`] and maps [`ApiError`] to a deliberate `Status` code.

use std::pin::Pin;

use credtrail_proto::pb::query as pb;
use credtrail_proto::pb::query::query_service_server::{QueryService, QueryServiceServer};
use futures::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use super::live::{self, LiveEvent};
use super::{ApiError, ops};
use crate::auth::{Access, Principal};
use crate::listen::{Acceptor, Limits};
use crate::state::AppState;
use crate::store::query::inventory::{BindingQuery, CredentialQuery};
use crate::store::query::suppressions::NewSuppression;
use crate::store::query::{AlertFilter, PageToken};

/// The service implementation.
#[derive(Clone)]
pub struct QueryApi {
    state: AppState,
}

/// The tonic service, ready for `tonic::transport::Server::add_service`.
pub fn service(state: AppState) -> QueryServiceServer<QueryApi> {
    QueryServiceServer::new(QueryApi { state })
}

/// Serves the `QueryService` on `listener` until `shutdown` resolves, with
/// the default [`Limits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    serve_limited(listener, Limits::default(), state, shutdown).await
}

/// Serves the `QueryService` through the shared accept loop
/// ([`crate::listen`]: connection cap, TLS handshake deadline when
/// `--api-tls-cert` is set, preface timeout, `TCP_NODELAY`) with HTTP/2
/// keep-alive, stream, per-call and idle limits ([`crate::listen::grpc`]).
pub async fn serve_limited(
    listener: tokio::net::TcpListener,
    limits: Limits,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let acceptor = Acceptor::new(listener, "grpc_api", &limits, state.metrics.clone());
    let routes = tonic::service::Routes::new(service(state.clone()));
    match state.auth.tls.as_ref().map(|t| t.grpc.clone()) {
        // TLS (`--api-tls-cert`): handshakes with the loop's deadline; a
        // verified client certificate reaches `allow` via `peer_certs()`.
        Some(tls) => {
            let tls = tokio_rustls::TlsAcceptor::from(tls);
            let metrics = state.metrics.clone();
            crate::listen::grpc::serve(
                acceptor,
                move |tcp, peer| {
                    let (tls, metrics) = (tls.clone(), metrics.clone());
                    Box::pin(async move {
                        crate::listen::handshake(
                            &tls,
                            tcp,
                            peer,
                            limits.handshake_timeout,
                            "grpc_api",
                            &metrics,
                        )
                        .await
                    })
                },
                routes,
                limits,
                None,
                shutdown,
            )
            .await;
        }
        None => {
            crate::listen::grpc::serve(
                acceptor,
                |tcp, _| Box::pin(async move { Some(tcp) }),
                routes,
                limits,
                None,
                shutdown,
            )
            .await;
        }
    }
    Ok(())
}

impl QueryApi {
    /// Authenticates the call (`authorization` metadata: `Bearer <token>`)
    /// and checks it may do `access`; a refusal is counted and answered
    /// `Unauthenticated` or `PermissionDenied`.
    async fn allow<T>(
        &self,
        method: &str,
        req: &Request<T>,
        access: Access,
        what: &'static str,
    ) -> Result<Principal, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let cert = req.peer_certs();
        let der = cert.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
        match self.state.auth.check_with(header, der, access, what).await {
            Ok(p) => Ok(p),
            Err(e) => {
                self.state.metrics.api_auth_refused("grpc", e.reason());
                self.state.metrics.api_request("grpc", method, e.reason());
                Err(e.into())
            }
        }
    }

    /// Counts the call by outcome and maps the error.
    fn done<T>(&self, method: &str, r: Result<T, ApiError>) -> Result<Response<T>, Status> {
        let code = match &r {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        self.state.metrics.api_request("grpc", method, code);
        r.map(Response::new).map_err(Status::from)
    }
}

fn filter(f: Option<pb::AlertFilter>) -> Result<AlertFilter, ApiError> {
    Ok(AlertFilter::try_from(f.unwrap_or_default())?)
}

type AlertStream = Pin<Box<dyn Stream<Item = Result<pb::StreamAlertsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl QueryService for QueryApi {
    async fn list_alerts(
        &self,
        req: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        self.allow("ListAlerts", &req, Access::Read, "read alerts")
            .await?;
        let r = req.into_inner();
        let out = async {
            let f = filter(r.filter)?;
            let page = ops::list_alerts(&self.state, f, r.page_size, &r.page_token).await?;
            let ids = page.alerts.iter().map(|a| a.alert.id.clone()).collect();
            let mut acts = super::context::summaries(&self.state, ids).await?;
            Ok(pb::ListAlertsResponse {
                alerts: page
                    .alerts
                    .iter()
                    .map(|a| {
                        let mut p = pb::Alert::from(a);
                        if let Some(v) = acts.remove(&a.alert.id) {
                            super::context::to_pb(&mut p, v);
                        }
                        p
                    })
                    .collect(),
                next_page_token: page
                    .next
                    .as_ref()
                    .map(PageToken::encode)
                    .unwrap_or_default(),
            })
        }
        .await;
        self.done("ListAlerts", out)
    }

    async fn get_alert(
        &self,
        req: Request<pb::GetAlertRequest>,
    ) -> Result<Response<pb::Alert>, Status> {
        self.allow("GetAlert", &req, Access::Read, "read alerts")
            .await?;
        let out = async {
            let a = ops::get_alert(&self.state, req.into_inner().id).await?;
            let mut p = pb::Alert::from(&a);
            if let Some(v) = super::context::detail(&self.state, a.alert.id.clone()).await? {
                super::context::to_pb(&mut p, v);
            }
            Ok(p)
        }
        .await;
        self.done("GetAlert", out)
    }

    type StreamAlertsStream = AlertStream;

    async fn stream_alerts(
        &self,
        req: Request<pb::StreamAlertsRequest>,
    ) -> Result<Response<AlertStream>, Status> {
        self.allow("StreamAlerts", &req, Access::Read, "stream alerts")
            .await?;
        let out = filter(req.into_inner().filter).map(|f| {
            let s = live::subscribe(&self.state, f).map(|ev| {
                Ok(pb::StreamAlertsResponse {
                    event: Some(match ev {
                        LiveEvent::Alert(a) => {
                            pb::stream_alerts_response::Event::Alert(pb::Alert::from(&*a))
                        }
                        LiveEvent::Skipped(count) => {
                            pb::stream_alerts_response::Event::Skipped(pb::Skipped { count })
                        }
                        LiveEvent::Triage(t) => {
                            pb::stream_alerts_response::Event::Triage(super::triage::stream_pb(&t))
                        }
                    }),
                })
            });
            Box::pin(s) as AlertStream
        });
        self.done("StreamAlerts", out)
    }

    async fn list_credentials(
        &self,
        req: Request<pb::ListCredentialsRequest>,
    ) -> Result<Response<pb::ListCredentialsResponse>, Status> {
        self.allow("ListCredentials", &req, Access::Read, "read credentials")
            .await?;
        let r = req.into_inner();
        let q = CredentialQuery {
            credential_id: r.credential_id.filter(|s| !s.is_empty()),
            node: r.node.filter(|s| !s.is_empty()),
            identity: r.identity.filter(|s| !s.is_empty()),
            limit: r.limit,
        };
        let out =
            ops::list_credentials(&self.state, q)
                .await
                .map(|c| pb::ListCredentialsResponse {
                    credentials: c.iter().map(Into::into).collect(),
                });
        self.done("ListCredentials", out)
    }

    async fn list_nodes(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        self.allow("ListNodes", &req, Access::Read, "read nodes")
            .await?;
        let out = ops::list_nodes(&self.state)
            .await
            .map(|n| pb::ListNodesResponse {
                nodes: n.iter().map(Into::into).collect(),
            });
        self.done("ListNodes", out)
    }

    async fn list_bindings(
        &self,
        req: Request<pb::ListBindingsRequest>,
    ) -> Result<Response<pb::ListBindingsResponse>, Status> {
        self.allow("ListBindings", &req, Access::Read, "read bindings")
            .await?;
        let r = req.into_inner();
        let q = BindingQuery {
            namespace: r.namespace,
            high_privilege_only: r.high_privilege_only,
            include_deleted: r.include_deleted,
        };
        let out = ops::list_bindings(&self.state, q)
            .await
            .map(|b| pb::ListBindingsResponse {
                bindings: b.iter().map(Into::into).collect(),
            });
        self.done("ListBindings", out)
    }

    async fn get_coverage(
        &self,
        req: Request<pb::GetCoverageRequest>,
    ) -> Result<Response<pb::Coverage>, Status> {
        self.allow("GetCoverage", &req, Access::Read, "read coverage")
            .await?;
        let out = ops::coverage(&self.state, req.into_inner().freshness_seconds)
            .await
            .map(|c| pb::Coverage::from(&c));
        self.done("GetCoverage", out)
    }

    async fn list_suppressions(
        &self,
        req: Request<pb::ListSuppressionsRequest>,
    ) -> Result<Response<pb::ListSuppressionsResponse>, Status> {
        self.allow("ListSuppressions", &req, Access::Read, "read suppressions")
            .await?;
        let out = ops::list_suppressions(&self.state, req.into_inner().include_expired)
            .await
            .map(|s| pb::ListSuppressionsResponse {
                suppressions: s.iter().map(Into::into).collect(),
            });
        self.done("ListSuppressions", out)
    }

    async fn create_suppression(
        &self,
        req: Request<pb::CreateSuppressionRequest>,
    ) -> Result<Response<pb::Suppression>, Status> {
        let who = self
            .allow(
                "CreateSuppression",
                &req,
                Access::Write,
                "create suppressions",
            )
            .await?;
        let out = async {
            let new = NewSuppression::from_pb(req.into_inner(), who.name)?;
            let s = ops::create_suppression(&self.state, new).await?;
            Ok(pb::Suppression::from(&s))
        }
        .await;
        self.done("CreateSuppression", out)
    }

    async fn delete_suppression(
        &self,
        req: Request<pb::DeleteSuppressionRequest>,
    ) -> Result<Response<pb::DeleteSuppressionResponse>, Status> {
        let who = self
            .allow(
                "DeleteSuppression",
                &req,
                Access::Write,
                "delete suppressions",
            )
            .await?;
        let out = ops::delete_suppression(&self.state, req.into_inner().id, who.name)
            .await
            .map(|()| pb::DeleteSuppressionResponse {});
        self.done("DeleteSuppression", out)
    }

    async fn triage_alert(
        &self,
        req: Request<pb::TriageAlertRequest>,
    ) -> Result<Response<pb::TriageAlertResponse>, Status> {
        // The principal, never a name from the request, is recorded.
        let who = self
            .allow("TriageAlert", &req, Access::Write, "triage alerts")
            .await?;
        let out = super::triage::triage_pb(&self.state, req.into_inner(), who.name).await;
        self.done("TriageAlert", out)
    }

    async fn get_credential_inventory(
        &self,
        req: Request<pb::GetCredentialInventoryRequest>,
    ) -> Result<Response<pb::CredentialInventory>, Status> {
        self.allow(
            "GetCredentialInventory",
            &req,
            Access::Read,
            "read credentials",
        )
        .await?;
        let id = req.into_inner().credential_id;
        let out = super::context::get_inventory(&self.state, id)
            .await
            .map(|inv| pb::CredentialInventory {
                credential_id: inv.credential_id.clone(),
                inventory_json: serde_json::to_string(&inv).unwrap_or_default(),
            });
        self.done("GetCredentialInventory", out)
    }
}
