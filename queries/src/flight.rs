//! Arrow Flight SQL over the same engine as the HTTP API, so data teams connect from their
//! own tools (ADBC and JDBC Flight SQL drivers, DBeaver, pandas via ADBC, ...).
//!
//! Supported: statements (`CommandStatementQuery`), prepared statements without
//! parameters, and `GetSqlInfo`. Every statement is read-only, like `POST /v1/sql`: DDL, DML
//! and `SET` are refused. Results stream as Arrow record batches, in the engine's schema.
//! The statement handle is the SQL text itself, so any server of the group can answer a
//! ticket and nothing is kept per client.

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
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::{Error, QueryEngine};

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
        "server_busy" | "query_memory_exceeded" => Status::resource_exhausted(msg),
        "data_damaged" => Status::data_loss(msg),
        _ => match e {
            Error::Sql(_) | Error::BadRequest(_) | Error::TooComplex(_) => {
                Status::invalid_argument(msg)
            }
            Error::NotFound { .. } => Status::not_found(msg),
            _ => Status::internal(msg),
        },
    }
}

/// The Flight SQL service over a query engine.
#[derive(Debug, Clone)]
pub struct FlightSql {
    engine: Arc<QueryEngine>,
}

impl FlightSql {
    /// A service over `engine`.
    pub fn new(engine: Arc<QueryEngine>) -> Self {
        FlightSql { engine }
    }

    /// The gRPC service to mount on a tonic server.
    pub fn into_service(self) -> FlightServiceServer<FlightSql> {
        FlightServiceServer::new(self)
    }

    async fn info(
        &self,
        sql: &str,
        ticket: Ticket,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let schema = self.engine.sql_schema(sql).await.map_err(status)?;
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
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let (schema, batches) = self.engine.sql_stream(sql).await.map_err(status)?;
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches.map_err(|e| {
                // Errors after the schema (a deadline, a bad cast, damage) keep their status
                // and reason code, as before it.
                arrow_flight::error::FlightError::Tonic(Box::new(status(Error::Sql(e))))
            }))
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
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
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        // No authentication on the loopback default; put a TLS-terminating, authenticating
        // proxy in front for remote clients (see README).
        let resp = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        Ok(Response::new(Box::pin(futures::stream::once(async {
            Ok(resp)
        }))))
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
        self.info(&query.query, ticket, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = utf8(&ticket.statement_handle, "statement handle")?;
        self.stream(&sql).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let schema = self.engine.sql_schema(&query.query).await.map_err(status)?;
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
        self.info(&sql, ticket, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = utf8(&cmd.prepared_statement_handle, "prepared statement handle")?;
        self.stream(&sql).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
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
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
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

/// Serves Flight SQL on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<QueryEngine>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_incoming(
        tonic::transport::server::TcpIncoming::from(listener),
        engine,
        shutdown,
    )
    .await
}

/// Serves Flight SQL on the connections `incoming` yields (TLS ones, say) until `shutdown`
/// resolves.
pub async fn serve_incoming<I, IO, IE>(
    incoming: I,
    engine: Arc<QueryEngine>,
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
        .add_service(FlightSql::new(engine).into_service())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
