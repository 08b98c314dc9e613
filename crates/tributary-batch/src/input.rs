//! Reading the batch input one line at a time: plain text (one question per line) or JSON Lines
//! (`{"id": ..., "question": "..."}`).
//!
//! The reader is a blocking iterator over any [`BufRead`]; the pipeline drives it on its own thread. It holds
//! one line at a time, and never more than [`MAX_LINE_BYTES`] of it, so memory stays flat whatever the input's
//! length, including a file that is one enormous line.
//!
//! Every line that carries something yields one [`InputRecord`]; blank lines yield nothing. A line that cannot
//! be used (malformed JSON, no `question`, invalid UTF-8, an over-long line, a question [`Question::new`]
//! refuses) still yields a record, with the reason in [`InputRecord::question`], so that the batch records it as
//! failed and goes on.

use std::fmt;
use std::io::{self, BufRead, Read};
use std::str::FromStr;

use serde::Deserialize;
use serde_json::Value;

use tributary_agent::Question;

/// The longest input line read; the rest of a longer line is skipped and the line is recorded as failed.
/// Generous next to [`MAX_QUESTION_BYTES`](tributary_agent::MAX_QUESTION_BYTES): JSON escapes and an `id` fit.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// How the input is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One question per line; its id is its line number (1-based), stable for the same file.
    Text,
    /// One JSON object per line with `id` (string or integer) and `question` (string).
    JsonLines,
}

/// One input line that carried something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// The 1-based line number in the input.
    pub line: u64,
    /// The key the answer is stored under (see [`RecordId`]).
    pub id: RecordId,
    /// The validated question, or why the line cannot be asked.
    pub question: Result<Question, String>,
}

/// The key of an answer in the store.
///
/// - Text input: the line number, `"17"`.
/// - JSON Lines: the given `id`; a number and the string of its digits are the same id (`7` and `"7"`).
/// - A JSON line whose `id` cannot be read: no id; the failure is stored once, by its line, apart from the
///   answers, so that it can never be taken for a given id (shown as `line:N`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(Key);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Given(String),
    Unreadable(u64),
}

/// Reads [`InputRecord`]s from a [`BufRead`], one line at a time.
#[derive(Debug)]
pub struct InputReader<R> {
    reader: R,
    format: InputFormat,
    line: u64,
    buffer: Vec<u8>,
}

/// An unknown `--format` name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown input format `{0}`: expected `text` or `jsonl`")]
pub struct UnknownFormat(String);

impl InputFormat {
    /// The format a file name suggests: `.jsonl`, `.ndjson` and `.json` are JSON Lines, anything else is text.
    pub fn from_file_name(name: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        if [".jsonl", ".ndjson", ".json"]
            .iter()
            .any(|suffix| lower.ends_with(suffix))
        {
            Self::JsonLines
        } else {
            Self::Text
        }
    }
}

impl FromStr for InputFormat {
    type Err = UnknownFormat;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "text" | "txt" => Ok(Self::Text),
            "jsonl" | "ndjson" | "json-lines" => Ok(Self::JsonLines),
            other => Err(UnknownFormat(other.to_owned())),
        }
    }
}

impl RecordId {
    /// A given id (or a text line's number).
    pub fn new(id: impl Into<String>) -> Self {
        Self(Key::Given(id.into()))
    }

    /// The id of a line whose own id cannot be read.
    pub fn for_line(line: u64) -> Self {
        Self(Key::Unreadable(line))
    }

    /// The given id; `None` for a line whose id cannot be read.
    pub fn given(&self) -> Option<&str> {
        match &self.0 {
            Key::Given(id) => Some(id),
            Key::Unreadable(_) => None,
        }
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Key::Given(id) => f.write_str(id),
            Key::Unreadable(line) => write!(f, "line:{line}"),
        }
    }
}

impl<R: BufRead> InputReader<R> {
    pub fn new(reader: R, format: InputFormat) -> Self {
        Self {
            reader,
            format,
            line: 0,
            buffer: Vec::new(),
        }
    }

    /// The next record, `None` at the end of the input. Only an I/O error of the input itself is an error.
    pub fn next_record(&mut self) -> io::Result<Option<InputRecord>> {
        loop {
            let Some(fits) = self.read_line()? else {
                return Ok(None);
            };
            let line = self.line;
            if !fits {
                return Ok(Some(InputRecord {
                    line,
                    id: self.fallback_id(line),
                    question: Err(format!("line {line} is longer than {MAX_LINE_BYTES} bytes")),
                }));
            }
            let text = match std::str::from_utf8(&self.buffer) {
                Ok(text) => text.trim(),
                Err(error) => {
                    return Ok(Some(InputRecord {
                        line,
                        id: self.fallback_id(line),
                        question: Err(format!("line {line} is not valid UTF-8: {error}")),
                    }));
                }
            };
            if text.is_empty() {
                continue;
            }
            return Ok(Some(match self.format {
                InputFormat::Text => InputRecord {
                    line,
                    id: RecordId::new(line.to_string()),
                    question: Question::new(text).map_err(|error| format!("line {line}: {error}")),
                },
                InputFormat::JsonLines => parse_json_line(line, text),
            }));
        }
    }

    /// Reads one line into `buffer` without its line ending. `Some(false)` when the line was longer than
    /// [`MAX_LINE_BYTES`] (the rest of it is consumed and dropped), `None` at the end of the input.
    fn read_line(&mut self) -> io::Result<Option<bool>> {
        self.buffer.clear();
        let limit = (MAX_LINE_BYTES + 1) as u64;
        let read = Read::take(&mut self.reader, limit).read_until(b'\n', &mut self.buffer)?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        if self.buffer.last() == Some(&b'\n') {
            self.buffer.pop();
            if self.buffer.last() == Some(&b'\r') {
                self.buffer.pop();
            }
            return Ok(Some(true));
        }
        if self.buffer.len() <= MAX_LINE_BYTES {
            return Ok(Some(true)); // the last line, without a line ending
        }
        self.skip_rest_of_line()?;
        self.buffer.clear();
        Ok(Some(false))
    }

    fn skip_rest_of_line(&mut self) -> io::Result<()> {
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                return Ok(());
            }
            match available.iter().position(|byte| *byte == b'\n') {
                Some(end) => {
                    self.reader.consume(end + 1);
                    return Ok(());
                }
                None => {
                    let length = available.len();
                    self.reader.consume(length);
                }
            }
        }
    }

    fn fallback_id(&self, line: u64) -> RecordId {
        match self.format {
            InputFormat::Text => RecordId::new(line.to_string()),
            InputFormat::JsonLines => RecordId::for_line(line),
        }
    }
}

/// Counts the records an [`InputReader`] would yield from `reader`: its lines that are not blank, an over-long
/// or non-UTF-8 line counting as a record. Streams, holding at most one line of [`MAX_LINE_BYTES`].
///
/// It reads lines exactly as the reader does, so the two cannot disagree (this count is the batch's progress
/// total); only the parsing of each line is skipped.
pub fn count_records(reader: impl BufRead) -> io::Result<u64> {
    let mut lines = InputReader::new(reader, InputFormat::Text);
    let mut records = 0;
    while let Some(fits) = lines.read_line()? {
        records += u64::from(!fits || !is_blank(&lines.buffer));
    }
    Ok(records)
}

/// Whether a line that fits yields no record: valid UTF-8 that is all white space, as [`str::trim`] sees it.
fn is_blank(line: &[u8]) -> bool {
    std::str::from_utf8(line).is_ok_and(|text| text.trim().is_empty())
}

impl<R: BufRead> Iterator for InputReader<R> {
    type Item = io::Result<InputRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// The fields of one JSON line; others are ignored.
#[derive(Deserialize)]
struct JsonLine {
    id: Option<Value>,
    question: Option<Value>,
}

fn parse_json_line(line: u64, text: &str) -> InputRecord {
    let failed = |id: RecordId, why: String| InputRecord {
        line,
        id,
        question: Err(format!("line {line}: {why}")),
    };
    let parsed: JsonLine = match serde_json::from_str(text) {
        Ok(parsed) => parsed,
        Err(error) => return failed(RecordId::for_line(line), format!("malformed JSON: {error}")),
    };
    let id = match parsed.id {
        Some(Value::String(id)) if !id.trim().is_empty() => RecordId::new(id),
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => {
            RecordId::new(number.to_string())
        }
        Some(other) => {
            return failed(
                RecordId::for_line(line),
                format!("`id` must be a non-empty string or an integer, not {other}"),
            );
        }
        None => return failed(RecordId::for_line(line), "missing `id`".to_owned()),
    };
    match parsed.question {
        Some(Value::String(question)) => {
            let question =
                Question::new(&question).map_err(|error| format!("line {line}: {error}"));
            InputRecord { line, id, question }
        }
        Some(other) => failed(id, format!("`question` must be a string, not {other}")),
        None => failed(id, "missing `question`".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], format: InputFormat) -> Vec<InputRecord> {
        InputReader::new(input, format)
            .collect::<io::Result<Vec<_>>>()
            .expect("reading from memory cannot fail")
    }

    fn question(text: &str) -> Result<Question, String> {
        Ok(Question::new(text).expect("valid"))
    }

    #[test]
    fn text_ids_are_line_numbers_and_blank_lines_are_skipped() {
        let records = read_all(b"why?\n\n  \r\nhow?\r\nlast", InputFormat::Text);
        let summary: Vec<_> = records
            .iter()
            .map(|r| {
                (
                    r.line,
                    r.id.given().expect("a given id"),
                    r.question.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, "1", question("why?")),
                (4, "4", question("how?")),
                (5, "5", question("last")),
            ]
        );
    }

    #[test]
    fn json_ids_may_be_strings_or_integers_and_other_fields_are_ignored() {
        let input = br#"{"id": "q-1", "question": "why?", "extra": true}
{"id": 7, "question": "how?"}
"#;
        let records = read_all(input, InputFormat::JsonLines);
        assert_eq!(records[0].id.to_string(), "q-1");
        assert_eq!(records[0].question, question("why?"));
        assert_eq!(records[1].id.to_string(), "7");
    }

    #[test]
    fn malformed_json_lines_are_records_with_their_line_number() {
        let input = b"{\"id\": 1, \"question\": \"ok?\"}\n{not json\n{\"id\": 2}\n{\"question\": \"no id\"}\n{\"id\": 1.5, \"question\": \"x\"}\n";
        let records = read_all(input, InputFormat::JsonLines);
        assert_eq!(records.len(), 5);
        assert!(records[0].question.is_ok());
        let bad: Vec<_> = records[1..]
            .iter()
            .map(|r| (r.id.to_string(), r.question.clone().unwrap_err()))
            .collect();
        assert_eq!(bad[0].0, "line:2");
        assert!(
            bad[0].1.starts_with("line 2: malformed JSON"),
            "{}",
            bad[0].1
        );
        assert_eq!(
            bad[1],
            ("2".to_owned(), "line 3: missing `question`".to_owned())
        );
        assert_eq!(
            bad[2],
            ("line:4".to_owned(), "line 4: missing `id`".to_owned())
        );
        assert_eq!(records[3].id.given(), None, "no id could be read");
        assert_eq!(bad[3].0, "line:5");
    }

    #[test]
    fn an_over_long_line_is_failed_and_the_next_line_is_read() {
        let mut input = vec![b'a'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\nnext?\n");
        let records = read_all(&input, InputFormat::Text);
        assert_eq!(records.len(), 2);
        assert!(
            records[0]
                .question
                .as_ref()
                .unwrap_err()
                .contains("longer than")
        );
        assert_eq!(
            (records[1].line, records[1].question.clone()),
            (2, question("next?"))
        );
    }

    #[test]
    fn invalid_utf8_and_over_long_questions_are_failed_records() {
        let mut input = b"\xff\xfe\n".to_vec();
        input.extend(std::iter::repeat_n(
            b'b',
            tributary_agent::MAX_QUESTION_BYTES + 1,
        ));
        let records = read_all(&input, InputFormat::Text);
        assert!(
            records[0]
                .question
                .as_ref()
                .unwrap_err()
                .contains("not valid UTF-8")
        );
        assert!(
            records[1]
                .question
                .as_ref()
                .unwrap_err()
                .contains("over the limit")
        );
    }

    #[test]
    fn counting_agrees_with_reading() {
        let input = b"a\n\n  \nb\r\n{\"id\": 1}\nlast";
        assert_eq!(
            count_records(&input[..]).expect("count"),
            read_all(input, InputFormat::Text).len() as u64
        );
    }

    #[test]
    fn counting_agrees_with_reading_on_unicode_white_space_and_over_long_blank_lines() {
        // Found by the `batch_input` fuzz target: the count looked at ASCII white space byte by byte, the reader
        // trims Unicode white space and reports an over-long line whatever it holds.
        let mut input = "\u{a0}\n\u{2003}\r\n\u{b}\nwhy?\n".as_bytes().to_vec();
        input.extend(std::iter::repeat_n(b' ', MAX_LINE_BYTES + 1));
        input.extend_from_slice(b"\nnext?\n");
        for format in [InputFormat::Text, InputFormat::JsonLines] {
            let read = read_all(&input, format).len() as u64;
            assert_eq!(read, 3, "why?, the over-long line, next?");
            assert_eq!(count_records(&input[..]).expect("count"), read);
        }
    }

    #[test]
    fn formats_come_from_names_and_file_extensions() {
        assert_eq!("jsonl".parse(), Ok(InputFormat::JsonLines));
        assert!("csv".parse::<InputFormat>().is_err());
        assert_eq!(
            InputFormat::from_file_name("Q.JSONL"),
            InputFormat::JsonLines
        );
        assert_eq!(
            InputFormat::from_file_name("questions.txt"),
            InputFormat::Text
        );
    }
}
