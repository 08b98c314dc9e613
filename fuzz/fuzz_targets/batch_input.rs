//! The batch input reader, both formats: every line that carries something is one record with its line number,
//! a bad line is a failed record (never a panic, never an I/O error from memory), and `count_records` counts
//! exactly the records the reader yields (it is the progress total). A record with a question survives a round
//! trip: written back as a line of the same format, it reads as the same id and question.
//!
//! Input: one control byte, then the input file.
//! - bit 0: the format (text or JSON Lines).
//! - bit 1: put `MAX_LINE_BYTES` bytes in front of the first line, so that it is exactly at the limit or over
//!   it (the limit is 64 KiB, far past what the fuzzer generates by itself); bit 2: those bytes are spaces
//!   rather than letters.
//! - bits 3 to 7: the capacity of the `BufReader` in front of the reader (1 to 32 bytes), so that lines and line
//!   endings fall across buffer boundaries.

#![no_main]

use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use tributary_agent::MAX_QUESTION_BYTES;
use tributary_batch::input::count_records;
use tributary_batch::{InputFormat, InputReader, InputRecord, MAX_LINE_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let format = if control & 1 == 0 {
        InputFormat::Text
    } else {
        InputFormat::JsonLines
    };
    let input = if control & 0b10 == 0 {
        rest.to_vec()
    } else {
        let filler = if control & 0b100 == 0 { b'q' } else { b' ' };
        let mut input = vec![filler; MAX_LINE_BYTES];
        input.extend_from_slice(rest);
        input
    };
    let capacity = usize::from(control >> 3) + 1;
    let total_lines = input.split(|byte| *byte == b'\n').count() as u64;

    let mut reader = InputReader::new(BufReader::with_capacity(capacity, &input[..]), format);
    let mut records = 0_u64;
    let mut last_line = 0;
    while let Some(record) = reader
        .next_record()
        .expect("reading from memory cannot fail")
    {
        records += 1;
        assert!(
            record.line > last_line && record.line <= total_lines,
            "line {} after line {last_line}, in {total_lines} lines",
            record.line
        );
        last_line = record.line;
        assert!(!record.id.to_string().is_empty(), "an empty id");
        match &record.question {
            Ok(question) => {
                let text = question.as_str();
                assert!(!text.is_empty() && text.len() <= MAX_QUESTION_BYTES);
                assert_eq!(text, text.trim());
                check_round_trip(format, &record);
            }
            Err(why) => assert!(!why.is_empty(), "a failure without a reason"),
        }
    }

    let counted = count_records(BufReader::with_capacity(capacity, &input[..]))
        .expect("counting from memory cannot fail");
    assert_eq!(
        counted, records,
        "count_records (the progress total) disagrees with the reader"
    );
});

/// Writes `record` back as the one line of an input of `format` and reads it again.
fn check_round_trip(format: InputFormat, record: &InputRecord) {
    let Ok(question) = &record.question else {
        return;
    };
    // A line with a question has a readable id (an unreadable one makes the line fail).
    let id = record
        .id
        .given()
        .expect("a record with a question has a given id");
    let line = match format {
        // A text line's id is its line number: the record comes back as line 1.
        InputFormat::Text => format!("{question}\n"),
        InputFormat::JsonLines => {
            let line = serde_json::json!({"id": id, "question": question.as_str()});
            format!("{line}\n")
        }
    };
    let mut reader = InputReader::new(line.as_bytes(), format);
    let again = reader
        .next_record()
        .expect("reading from memory cannot fail")
        .expect("the line written back is a record");
    assert_eq!(again.question.as_ref(), Ok(question), "{line}");
    let expected_id = match format {
        InputFormat::Text => "1",
        InputFormat::JsonLines => id,
    };
    assert_eq!(again.id.given(), Some(expected_id), "{line}");
    assert!(
        reader
            .next_record()
            .expect("reading from memory cannot fail")
            .is_none(),
        "one line written, more than one record read: {line}"
    );
}
