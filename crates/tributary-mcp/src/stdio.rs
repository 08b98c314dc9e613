//! MCP's stdio transport, framed here: one JSON-RPC message per line, in and out.
//!
//! rmcp's own stdio framing reads a line of any length into memory and skips a line that is not a message in
//! silence. Here a line is at most [`MAX_LINE_BYTES`], and one that is not a message gets the answer JSON-RPC 2.0
//! asks for: a parse error (`-32700`, no id) for a line that is not JSON, an invalid request (`-32600`, with the
//! request's id when it has one) for JSON that is not a message; a notification or a response that cannot be
//! read gets no answer (JSON-RPC never answers those), only a log line. Everything else is rmcp's.

use futures::SinkExt as _;
use rmcp::model::{ErrorCode, ErrorData, JsonRpcError, JsonRpcVersion2_0, NumberOrString};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::{RoleServer, ServiceExt as _};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, PollSender};

use crate::server::McpServer;

/// The longest line read: a longer one is answered with a parse error and skipped.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// What one line of input is.
#[derive(Debug)]
pub enum Decoded {
    /// A message for the server.
    Message(Box<RxJsonRpcMessage<RoleServer>>),
    /// Not a message: this error is the answer.
    Answer(Box<JsonRpcError>),
    /// Nothing to do: a blank line, or a notification or response that cannot be read (never answered).
    Nothing,
}

/// Reads one line (without its `\n`).
pub fn decode_line(line: &[u8]) -> Decoded {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    if line.trim_ascii().is_empty() {
        return Decoded::Nothing;
    }
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(error) => {
            return answer(
                None,
                ErrorCode::PARSE_ERROR,
                format!("parse error: the line is not JSON: {error}"),
            );
        }
    };
    let id = value.get("id").and_then(request_id);
    let is_request = value.get("method").is_some() && id.is_some();
    match serde_json::from_value::<RxJsonRpcMessage<RoleServer>>(value) {
        Ok(message) => Decoded::Message(Box::new(message)),
        Err(error) if is_request => answer(
            id,
            ErrorCode::INVALID_REQUEST,
            format!("invalid request: {error}"),
        ),
        Err(error) if id.is_none() && !is_request => {
            // A batch, a bare value, or a notification that cannot be read: a batch or a value is answered (it
            // has no id to answer with), a notification never is.
            if error.is_data() && line.trim_ascii_start().first() == Some(&b'{') {
                tracing::debug!(%error, "a notification that cannot be read, skipped");
                Decoded::Nothing
            } else {
                answer(
                    None,
                    ErrorCode::INVALID_REQUEST,
                    format!("invalid request: not a JSON-RPC message: {error}"),
                )
            }
        }
        Err(error) => {
            tracing::debug!(%error, "a response that cannot be read, skipped");
            Decoded::Nothing
        }
    }
}

fn answer(id: Option<NumberOrString>, code: ErrorCode, message: String) -> Decoded {
    Decoded::Answer(Box::new(JsonRpcError {
        jsonrpc: JsonRpcVersion2_0,
        id,
        error: ErrorData::new(code, message, None),
    }))
}

/// A JSON-RPC id: a string or an integer.
fn request_id(value: &Value) -> Option<NumberOrString> {
    match value {
        Value::String(text) => Some(NumberOrString::String(text.as_str().into())),
        Value::Number(number) => number.as_i64().map(NumberOrString::Number),
        _ => None,
    }
}

/// Serves `server` on `input` and `output` until the input ends or `stop` is cancelled; every run is joined
/// before it returns.
pub(crate) async fn serve_lines(
    server: McpServer,
    input: impl AsyncRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
    stop: CancellationToken,
) -> Result<(), std::io::Error> {
    let (to_server, from_input) = mpsc::channel::<RxJsonRpcMessage<RoleServer>>(32);
    let (to_output, mut lines_out) = mpsc::channel::<String>(64);
    let sink = PollSender::new(to_output.clone()).with(|message: TxJsonRpcMessage<RoleServer>| {
        std::future::ready(Ok::<_, tokio_util::sync::PollSendError<String>>(
            serde_json::to_string(&message).unwrap_or_default(),
        ))
    });
    let stream = futures::stream::unfold(from_input, |mut receiver| async move {
        receiver.recv().await.map(|message| (message, receiver))
    });
    let done = stop.child_token();
    let serving = async {
        let served = match server
            .serve_with_ct((Box::pin(sink), Box::pin(stream)), done.clone())
            .await
        {
            Ok(running) => running
                .waiting()
                .await
                .map(|_| ())
                .map_err(std::io::Error::other),
            Err(error) => Err(std::io::Error::other(error)),
        };
        done.cancel();
        served
    };
    let reading = async {
        let read = read_lines(input, &to_server, &to_output, &done).await;
        // The input ended (or the session did): the server sees its stream end.
        drop(to_server);
        drop(to_output);
        read
    };
    let writing = async {
        while let Some(line) = lines_out.recv().await {
            output.write_all(line.as_bytes()).await?;
            output.write_all(b"\n").await?;
            output.flush().await?;
        }
        Ok::<(), std::io::Error>(())
    };
    let (served, read, written) = tokio::join!(serving, reading, writing);
    served?;
    read?;
    written
}

/// Reads `input` line by line, each at most [`MAX_LINE_BYTES`], until it ends or `done` is cancelled; hands each
/// message to the server and each answer to the output.
async fn read_lines(
    input: impl AsyncRead + Unpin,
    to_server: &mpsc::Sender<RxJsonRpcMessage<RoleServer>>,
    to_output: &mpsc::Sender<String>,
    done: &CancellationToken,
) -> Result<(), std::io::Error> {
    let mut input = BufReader::new(input);
    let mut line: Vec<u8> = Vec::new();
    let mut too_long = false;
    loop {
        let available = tokio::select! {
            () = done.cancelled() => return Ok(()),
            available = input.fill_buf() => available?,
        };
        if available.is_empty() {
            // The end: a last line without its newline still counts.
            if !line.is_empty() && !too_long {
                hand_over(&line, to_server, to_output).await;
            }
            return Ok(());
        }
        let (taken, ended) = match available.iter().position(|&byte| byte == b'\n') {
            Some(end) => (end + 1, true),
            None => (available.len(), false),
        };
        let piece = &available[..taken - usize::from(ended)];
        if !too_long {
            if line.len() + piece.len() > MAX_LINE_BYTES {
                too_long = true;
                line = Vec::new();
                let refused = answer(
                    None,
                    ErrorCode::PARSE_ERROR,
                    format!("parse error: a line over {MAX_LINE_BYTES} bytes; it is skipped"),
                );
                hand_over_answer(refused, to_output).await;
            } else {
                line.extend_from_slice(piece);
            }
        }
        input.consume(taken);
        if ended {
            if !too_long {
                hand_over(&line, to_server, to_output).await;
            }
            line.clear();
            too_long = false;
        }
    }
}

async fn hand_over(
    line: &[u8],
    to_server: &mpsc::Sender<RxJsonRpcMessage<RoleServer>>,
    to_output: &mpsc::Sender<String>,
) {
    match decode_line(line) {
        Decoded::Message(message) => {
            let _ = to_server.send(*message).await;
        }
        answered @ Decoded::Answer(_) => hand_over_answer(answered, to_output).await,
        Decoded::Nothing => {}
    }
}

async fn hand_over_answer(decoded: Decoded, to_output: &mpsc::Sender<String>) {
    if let Decoded::Answer(error) = decoded {
        tracing::debug!(message = %error.error.message, "a line that is not a message, answered");
        let _ = to_output
            .send(serde_json::to_string(&error).unwrap_or_default())
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(line: &[u8]) -> Value {
        match decode_line(line) {
            Decoded::Answer(error) => serde_json::to_value(&error).expect("serialises"),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn a_line_that_is_not_json_is_a_parse_error_without_an_id() {
        let error = answered(b"this is not json");
        assert_eq!(error["error"]["code"], -32700, "{error}");
        assert!(error.get("id").is_none(), "{error}");
        assert_eq!(answered(&[0xff, 0xfe, 0x00])["error"]["code"], -32700);
        assert_eq!(
            answered(br#"{"jsonrpc": "2.0", "id": 6, "method":"#)["error"]["code"],
            -32700
        );
    }

    #[test]
    fn json_that_is_not_a_message_is_an_invalid_request_with_its_id() {
        let error =
            answered(br#"{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": 3}"#);
        assert_eq!(error["error"]["code"], -32600, "{error}");
        assert_eq!(error["id"], 7, "{error}");
        assert_eq!(answered(b"[1, 2]")["error"]["code"], -32600);
        assert_eq!(answered(b"42")["error"]["code"], -32600);
    }

    #[test]
    fn messages_pass_and_blank_lines_and_unreadable_notifications_get_nothing() {
        assert!(matches!(
            decode_line(br#"{"jsonrpc": "2.0", "id": 1, "method": "ping"}"#),
            Decoded::Message(_)
        ));
        assert!(matches!(
            decode_line(b"\xEF\xBB\xBF{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"ping\"}\r"),
            Decoded::Message(_)
        ));
        assert!(matches!(decode_line(b"   \r"), Decoded::Nothing));
        assert!(matches!(
            decode_line(br#"{"jsonrpc": "2.0", "method": "notifications/progress", "params": 5}"#),
            Decoded::Nothing
        ));
    }
}
