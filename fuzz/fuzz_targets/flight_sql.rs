//! Bytes -> one Flight SQL call: the first byte picks the call, the rest is its SQL
//! statement (as UTF-8, lossily) or its raw ticket, handle or command bytes.
#![no_main]

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    CommandPreparedStatementQuery, CommandStatementQuery, ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::{Action, FlightDescriptor, Ticket};
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::Request;
use veritrace_fuzz::{HARNESS, check_healthz, check_status, drain};

const ACTIONS: &[&str] = &[
    "CreatePreparedStatement",
    "ClosePreparedStatement",
    "BeginTransaction",
    "CancelQuery",
    "",
];

fuzz_target!(|data: &[u8]| {
    let [op, rest @ ..] = data else {
        return;
    };
    let sql = String::from_utf8_lossy(rest).into_owned();
    let h = &*HARNESS;
    let svc = &h.flight;
    h.rt.block_on(async {
        match op % 7 {
            0 => {
                let q = CommandStatementQuery {
                    query: sql,
                    transaction_id: None,
                };
                let desc = FlightDescriptor::new_cmd(q.as_any().encode_to_vec());
                match svc.get_flight_info_statement(q, Request::new(desc)).await {
                    Err(s) => check_status("statement info", &s, false),
                    Ok(info) => {
                        let ticket = info.get_ref().endpoint[0].ticket.clone().expect("ticket");
                        drain(
                            "statement",
                            FlightService::do_get(svc, Request::new(ticket)).await,
                        )
                        .await;
                    }
                }
            }
            1 => {
                let t = TicketStatementQuery {
                    statement_handle: rest.to_vec().into(),
                };
                let ticket = Ticket::new(t.as_any().encode_to_vec());
                drain(
                    "statement handle",
                    svc.do_get_statement(t, Request::new(ticket)).await,
                )
                .await;
            }
            2 => {
                let req = ActionCreatePreparedStatementRequest {
                    query: sql,
                    transaction_id: None,
                };
                let action = Action::new("CreatePreparedStatement", req.as_any().encode_to_vec());
                match svc
                    .do_action_create_prepared_statement(req, Request::new(action))
                    .await
                {
                    Err(s) => check_status("prepare", &s, false),
                    Ok(created) => {
                        let cmd = CommandPreparedStatementQuery {
                            prepared_statement_handle: created.prepared_statement_handle.clone(),
                        };
                        let desc = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
                        match svc
                            .get_flight_info_prepared_statement(cmd.clone(), Request::new(desc))
                            .await
                        {
                            Err(s) => check_status("prepared info", &s, false),
                            Ok(info) => {
                                let ticket =
                                    info.get_ref().endpoint[0].ticket.clone().expect("ticket");
                                drain(
                                    "prepared",
                                    svc.do_get_prepared_statement(cmd, Request::new(ticket))
                                        .await,
                                )
                                .await;
                            }
                        }
                        let close = ActionClosePreparedStatementRequest {
                            prepared_statement_handle: created.prepared_statement_handle,
                        };
                        let action =
                            Action::new("ClosePreparedStatement", close.as_any().encode_to_vec());
                        if let Err(s) = svc
                            .do_action_close_prepared_statement(close, Request::new(action))
                            .await
                        {
                            check_status("close", &s, false);
                        }
                    }
                }
            }
            3 => {
                let cmd = CommandPreparedStatementQuery {
                    prepared_statement_handle: rest.to_vec().into(),
                };
                let desc = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
                if let Err(s) = svc
                    .get_flight_info_prepared_statement(cmd.clone(), Request::new(desc))
                    .await
                {
                    check_status("prepared handle info", &s, false);
                }
                let ticket = Ticket::new(cmd.as_any().encode_to_vec());
                drain(
                    "prepared handle",
                    svc.do_get_prepared_statement(cmd, Request::new(ticket))
                        .await,
                )
                .await;
            }
            4 => {
                let ticket = Ticket::new(rest.to_vec());
                drain(
                    "raw ticket",
                    FlightService::do_get(svc, Request::new(ticket)).await,
                )
                .await;
            }
            5 => {
                let desc = FlightDescriptor::new_cmd(rest.to_vec());
                match FlightService::get_flight_info(svc, Request::new(desc)).await {
                    Err(s) => check_status("descriptor", &s, false),
                    Ok(info) => {
                        if let Some(ticket) = info
                            .get_ref()
                            .endpoint
                            .first()
                            .and_then(|e| e.ticket.clone())
                        {
                            drain(
                                "descriptor",
                                FlightService::do_get(svc, Request::new(ticket)).await,
                            )
                            .await;
                        }
                    }
                }
            }
            _ => {
                let (kind, body) = rest.split_first().unwrap_or((&0, &[]));
                let action =
                    Action::new(ACTIONS[usize::from(*kind) % ACTIONS.len()], body.to_vec());
                match FlightService::do_action(svc, Request::new(action)).await {
                    Err(s) => check_status("action", &s, false),
                    Ok(stream) => {
                        let mut stream = stream.into_inner();
                        while let Some(item) = stream.next().await {
                            if let Err(s) = item {
                                check_status("action stream", &s, true);
                            }
                        }
                    }
                }
            }
        }
        check_healthz(&h.app).await;
    });
});
