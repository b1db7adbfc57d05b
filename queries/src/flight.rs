//! Arrow Flight SQL over the same engine as the HTTP API, so data teams connect from their
//! own tools (ADBC and JDBC Flight SQL drivers, DBeaver, pandas via ADBC, ...).
//!
//! Supported: statements (`CommandStatementQuery`), prepared statements without
//! parameters, and `GetSqlInfo`. Every statement is read-only, like `POST /v1/sql`: DDL, DML
//! and `SET` are refused. Results stream as Arrow record batches, in the engine's schema.
//! The statement handle is the SQL text itself, so any server of the group can answer a
//! ticket and nothing is kept per client.
//!
//! With an [`Authenticator`], every call needs the `authorization` header (`Bearer <token>`,
//! as ADBC's `adbc.flight.sql.authorization_header` and JDBC's `token` send it) or a
//! handshake with basic credentials whose password is the token (the server answers with
//! the bearer header the client then sends); a statement reads what the identity's scope
//! may see ([`crate::visibility`]).

use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetSqlInfo, CommandPreparedStatementQuery,
    CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::access::{Authenticator, Capability, Identity, Role};
use crate::audit::{AuditLog, Facts};
use crate::{Error, QueryEngine};

/// The Flight action that answers a query certificate ([`QueryEngine::rows_certificate`]).
pub const CERTIFICATE_ACTION: &str = "veritrace.certificate";

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

static SQL_INFO: LazyLock<Result<SqlInfoData, String>> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Veritrace");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.build().map_err(|e| e.to_string())
});

fn sql_info() -> Result<&'static SqlInfoData, Status> {
    SQL_INFO
        .as_ref()
        .map_err(|e| Status::internal(format!("server info: {e}")))
}

fn status(e: Error) -> Status {
    // The reason code leads the message, as `code` does in HTTP error bodies.
    let msg = format!("{}: {}", e.code(), e.message());
    match e.code() {
        "query_timeout" => Status::deadline_exceeded(msg),
        "server_busy" | "query_memory_exceeded" | "too_many_queries" => {
            Status::resource_exhausted(msg)
        }
        "data_damaged" => Status::data_loss(msg),
        _ => match e {
            Error::Sql(_) | Error::BadRequest(_) | Error::TooComplex(_) => {
                Status::invalid_argument(msg)
            }
            Error::NotFound { .. } => Status::not_found(msg),
            Error::Unauthenticated { .. } => Status::unauthenticated(msg),
            Error::Forbidden(_) => Status::permission_denied(msg),
            _ => Status::internal(msg),
        },
    }
}

/// The Flight SQL service over a query engine.
#[derive(Debug, Clone)]
pub struct FlightSql {
    engine: Arc<QueryEngine>,
    auth: Option<Arc<Authenticator>>,
    audit: Option<Arc<AuditLog>>,
}

impl FlightSql {
    /// A service over `engine`, without authentication (every caller an anonymous admin).
    pub fn new(engine: Arc<QueryEngine>) -> Self {
        FlightSql {
            engine,
            auth: None,
            audit: None,
        }
    }

    /// A service over `engine` with `auth` deciding who each call is.
    pub fn with_auth(engine: Arc<QueryEngine>, auth: Arc<Authenticator>) -> Self {
        FlightSql {
            engine,
            auth: Some(auth),
            audit: None,
        }
    }

    /// Writes every statement run (and every refused call) to `audit`
    /// ([`crate::audit`]).
    pub fn with_audit(mut self, audit: Option<Arc<AuditLog>>) -> Self {
        self.audit = audit;
        self
    }

    async fn identity(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Identity, Status> {
        let Some(a) = &self.auth else {
            return Ok(Identity::anonymous(Role::Admin));
        };
        let header = metadata
            .get("authorization")
            .map(|v| v.to_str().unwrap_or("\u{fffd}"));
        a.authenticate(header).await.map_err(status)
    }

    /// The engine the caller's scope reads.
    async fn engine_for(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<QueryEngine, Status> {
        let id = self.identity(metadata).await?;
        self.engine_for_identity(&id).await
    }

    async fn engine_for_identity(&self, id: &Identity) -> Result<QueryEngine, Status> {
        id.require(Capability::Rows).map_err(status)?;
        let quota = self.auth.as_ref().and_then(|a| a.quota(id));
        Ok(self
            .engine
            .scoped(&id.scope())
            .await
            .map_err(status)?
            .with_quota(quota))
    }

    /// The query certificate of `sql` as `id` sees it: (rows, certificate JSON).
    async fn certificate(&self, id: &Identity, sql: &str) -> Result<(u64, Vec<u8>), Status> {
        id.require(Capability::Proofs).map_err(status)?;
        let engine = self.engine_for_identity(id).await?;
        let (_, cert) = engine
            .rows_certificate(sql, &id.scope().label(), crate::MAX_CERTIFICATE_ROWS)
            .await
            .map_err(status)?;
        let bytes = serde_json::to_vec(&cert)
            .map_err(|e| Status::internal(format!("encoding the certificate: {e}")))?;
        Ok((cert.rows.len() as u64, bytes))
    }

    /// The gRPC service to mount on a tonic server.
    pub fn into_service(self) -> FlightServiceServer<FlightSql> {
        FlightServiceServer::new(self)
    }

    async fn info(
        &self,
        sql: &str,
        ticket: Ticket,
        request: Request<FlightDescriptor>,
    ) -> Result<FlightInfo, Status> {
        let engine = self.engine_for(request.metadata()).await?;
        let descriptor = request.into_inner();
        let schema = engine.sql_schema(sql).await.map_err(status)?;
        FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("encoding the schema: {e}")))
            .map(|i| {
                i.with_endpoint(FlightEndpoint::new().with_ticket(ticket))
                    .with_descriptor(descriptor)
                    .with_ordered(true)
            })
    }

    async fn stream(
        &self,
        sql: &str,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let started = (veritrace_processors::now_ms(), std::time::Instant::now());
        let facts = || Facts {
            sql: Some(sql.to_owned()),
            ..Facts::default()
        };
        // Refusals before any row are audited here; a stream's entry is written when it
        // ends, fails or is dropped.
        let refused = |id: Option<&Identity>, st: &Status| {
            let audit = self.audit.clone();
            let (id, facts, st) = (id.cloned(), facts(), st.clone());
            async move {
                if let Some(a) = audit {
                    let code = st.message().split(':').next().unwrap_or("error").to_owned();
                    let _ = a
                        .record(
                            id.as_ref().ok_or(()),
                            "flight",
                            "DoGet".into(),
                            facts,
                            st.code() as u32,
                            code,
                            None,
                            started,
                        )
                        .await;
                }
            }
        };
        let id = match self.identity(metadata).await {
            Ok(i) => i,
            Err(st) => {
                refused(None, &st).await;
                return Err(st);
            }
        };
        let engine = match self.engine_for_identity(&id).await {
            Ok(e) => e,
            Err(st) => {
                refused(Some(&id), &st).await;
                return Err(st);
            }
        };
        let (schema, batches) = match engine.sql_stream(sql).await {
            Ok(x) => x,
            Err(e) => {
                let st = status(e);
                refused(Some(&id), &st).await;
                return Err(st);
            }
        };
        let rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = {
            let rows = rows.clone();
            batches.inspect_ok(move |b| {
                rows.fetch_add(b.num_rows() as u64, std::sync::atomic::Ordering::Relaxed);
            })
        };
        let encoded = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(counted.map_err(|e| {
                // Errors after the schema (a deadline, a bad cast, damage) keep their status
                // and reason code, as before it.
                arrow_flight::error::FlightError::Tonic(Box::new(status(Error::Sql(e))))
            }))
            .map_err(Status::from);
        let Some(audit) = self.audit.clone() else {
            return Ok(Response::new(Box::pin(encoded)));
        };
        let entry = Arc::new(std::sync::Mutex::new(StreamAudit {
            audit,
            id,
            facts: Some(facts()),
            rows,
            digest: sha2::Sha256::default(),
            outcome: None,
            ended: false,
            started,
        }));
        let (seen, end) = (entry.clone(), entry);
        let audited = encoded.inspect(move |item| lock(&seen).see(item)).chain(
            futures::stream::once(async move {
                lock(&end).ended = true;
                None
            })
            .filter_map(|x: Option<Result<arrow_flight::FlightData, Status>>| async move { x }),
        );
        Ok(Response::new(Box::pin(audited)))
    }
}

/// A poisoned lock only means a panic elsewhere; the entry is still written.
fn lock(e: &std::sync::Mutex<StreamAudit>) -> std::sync::MutexGuard<'_, StreamAudit> {
    e.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The audit entry of one Flight stream: rows counted and messages digested as they pass,
/// written when the stream ends, fails or is dropped.
struct StreamAudit {
    audit: Arc<AuditLog>,
    id: Identity,
    facts: Option<Facts>,
    rows: Arc<std::sync::atomic::AtomicU64>,
    digest: sha2::Sha256,
    outcome: Option<(u32, String)>,
    ended: bool,
    started: (i64, std::time::Instant),
}

impl StreamAudit {
    fn see(&mut self, item: &Result<arrow_flight::FlightData, Status>) {
        use sha2::Digest;
        match item {
            Ok(d) => {
                self.digest.update(&d.data_header);
                self.digest.update(&d.data_body);
            }
            Err(st) if self.outcome.is_none() => {
                let code = st.message().split(':').next().unwrap_or("error").to_owned();
                self.outcome = Some((st.code() as u32, code));
            }
            Err(_) => {}
        }
    }
}

impl Drop for StreamAudit {
    fn drop(&mut self) {
        use sha2::Digest;
        let Some(mut facts) = self.facts.take() else {
            return;
        };
        facts.rows = Some(self.rows.load(std::sync::atomic::Ordering::Relaxed));
        let (code, outcome) = match self.outcome.take() {
            Some(o) => o,
            None if self.ended => (0, "ok".into()),
            // The client went away before the last row.
            None => (tonic::Code::Cancelled as u32, "cancelled".into()),
        };
        let digest = std::mem::take(&mut self.digest).finalize();
        let (audit, id, started) = (self.audit.clone(), self.id.clone(), self.started);
        // Dropped on a runtime thread (the stream's); the entry is queued from a task.
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                if let Err(e) = audit
                    .record(
                        Ok(&id),
                        "flight",
                        "DoGet".into(),
                        facts,
                        code,
                        outcome,
                        Some(&digest[..]),
                        started,
                    )
                    .await
                {
                    tracing::error!(error = %e, "a Flight SQL stream's audit entry could not be written");
                }
            });
        }
    }
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, Status> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Status::invalid_argument(format!("{what} is not UTF-8 SQL")))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        // The credentials come in the header (basic or bearer); the answer carries the
        // bearer header the client sends from then on.
        let bearer = match &self.auth {
            None => None,
            Some(_) => {
                self.identity(request.metadata()).await?;
                let token = request
                    .metadata()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(bearer_of)
                    .ok_or_else(|| Status::unauthenticated("missing_credentials: no token"))?;
                Some(token)
            }
        };
        let resp = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let mut out: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(futures::stream::once(async { Ok(resp) })));
        if let Some(t) = bearer {
            let v = format!("Bearer {t}")
                .parse()
                .map_err(|_| Status::unauthenticated("invalid_token: not a header value"))?;
            out.metadata_mut().insert("authorization", v);
        }
        Ok(out)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = TicketStatementQuery {
            statement_handle: query.query.clone().into_bytes().into(),
        };
        let ticket = Ticket::new(ticket.as_any().encode_to_vec());
        self.info(&query.query, ticket, request)
            .await
            .map(Response::new)
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = utf8(&ticket.statement_handle, "statement handle")?;
        self.stream(&sql, request.metadata()).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let engine = self.engine_for(request.metadata()).await?;
        let schema = engine.sql_schema(&query.query).await.map_err(status)?;
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into_bytes().into(),
            dataset_schema,
            parameter_schema: Default::default(),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let sql = utf8(&cmd.prepared_statement_handle, "prepared statement handle")?;
        let ticket = Ticket::new(cmd.as_any().encode_to_vec());
        self.info(&sql, ticket, request).await.map(Response::new)
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = utf8(&cmd.prepared_statement_handle, "prepared statement handle")?;
        self.stream(&sql, request.metadata()).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<arrow_flight::ActionType, Status>>> {
        Some(vec![Ok(arrow_flight::ActionType {
            r#type: CERTIFICATE_ACTION.into(),
            description: "body: a SQL statement whose result has an event_id column; result: its query certificate (veritrace.rows/1 JSON: every row with its event's proof)".into(),
        })])
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type != CERTIFICATE_ACTION {
            return Err(Status::invalid_argument(format!(
                "unknown action {:?}; this server knows {CERTIFICATE_ACTION:?} besides the Flight SQL ones",
                request.get_ref().r#type
            )));
        }
        let started = (veritrace_processors::now_ms(), std::time::Instant::now());
        let sql = utf8(&request.get_ref().body, "action body (SQL)")?;
        let id = self.identity(request.metadata()).await;
        let answer = match &id {
            Ok(id) => self.certificate(id, &sql).await,
            Err(st) => Err(st.clone()),
        };
        if let Some(a) = &self.audit {
            let (code, outcome, rows, digest) = match &answer {
                Ok((rows, bytes)) => (0, "ok".to_owned(), Some(*rows), Some(sha256(bytes))),
                Err(st) => (
                    st.code() as u32,
                    st.message().split(':').next().unwrap_or("error").to_owned(),
                    None,
                    None,
                ),
            };
            let facts = Facts {
                sql: Some(sql.clone()),
                rows,
                ..Facts::default()
            };
            if let Err(e) = a
                .record(
                    id.as_ref().map_err(|_| ()),
                    "flight",
                    format!("DoAction {CERTIFICATE_ACTION}"),
                    facts,
                    code,
                    outcome,
                    digest.as_ref().map(|d| &d[..]),
                    started,
                )
                .await
            {
                tracing::error!(error = %e, "a Flight SQL action's audit entry could not be written");
                return Err(Status::unavailable(
                    "audit_unavailable: the audit log could not take this request's entry",
                ));
            }
        }
        let (_, bytes) = answer?;
        let one = arrow_flight::Result { body: bytes.into() };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(one)]))))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.identity(request.metadata()).await?;
        let ticket = Ticket::new(query.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(query.into_builder(sql_info()?).schema().as_ref())
            .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(request.into_inner());
        Ok(Response::new(info))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.identity(request.metadata()).await?;
        let builder = query.into_builder(sql_info()?);
        let schema = builder.schema();
        let batch = builder.build();
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async { batch }))
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Err(Status::unimplemented(format!(
            "ticket type {} is not supported",
            message.type_url
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The token of an `authorization` value: a bearer token, or a basic password.
fn bearer_of(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        return crate::access::auth::basic_password(rest);
    }
    None
}

/// Serves Flight SQL on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: FlightSql,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_incoming(
        tonic::transport::server::TcpIncoming::from(listener),
        service,
        shutdown,
    )
    .await
}

/// Serves Flight SQL on the connections `incoming` yields (TLS ones, say) until `shutdown`
/// resolves.
pub async fn serve_incoming<I, IO, IE>(
    incoming: I,
    service: FlightSql,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error>
where
    I: futures::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tonic::transport::Server::builder()
        .add_service(service.into_service())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
