//! A line of `tributary mcp`'s standard input, through tributary-mcp's own stdio framing: read as a message for
//! the server, answered with a JSON-RPC error (a parse error, or an invalid request with the request's id), or
//! skipped (a blank line, a notification or a response that cannot be read). Never a panic; an answer always
//! serialises, with a code of -32700 or -32600 and a message.
//!
//! Input: the line's bytes, without its newline (a newline inside is fine: the framing never hands one over, but
//! the decoder must not care).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tributary_mcp::fuzzing::stdio_line(data);
});
