//! A validated question: not empty, not over [`MAX_QUESTION_BYTES`].

use std::fmt;

/// The longest question accepted, in bytes of UTF-8.
pub const MAX_QUESTION_BYTES: usize = 4096;

/// A question that passed validation. Surrounding white space is trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question(String);

/// Why a question was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuestionError {
    #[error("the question is empty")]
    Empty,
    #[error("the question is {bytes} bytes long, over the limit of {limit} bytes")]
    TooLong { bytes: usize, limit: usize },
    /// A control character other than tab or a line break: a NUL byte, an escape sequence, ...
    #[error("the question contains the control character {} at character {position}", escaped(*character))]
    ControlCharacter { character: char, position: usize },
}

/// `U+0000`-style, for a character that cannot be shown as itself.
fn escaped(character: char) -> String {
    format!("U+{:04X}", u32::from(character))
}

impl Question {
    /// Validates and trims `text`.
    pub fn new(text: &str) -> Result<Self, QuestionError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(QuestionError::Empty);
        }
        if trimmed.len() > MAX_QUESTION_BYTES {
            return Err(QuestionError::TooLong {
                bytes: trimmed.len(),
                limit: MAX_QUESTION_BYTES,
            });
        }
        if let Some((position, character)) = trimmed
            .chars()
            .enumerate()
            .find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(QuestionError::ControlCharacter {
                character,
                position: position + 1,
            });
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Question {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line of NUL bytes was once answered `ok`.
    #[test]
    fn control_characters_are_refused_by_position() {
        assert_eq!(
            Question::new("\0\0\0").unwrap_err().to_string(),
            "the question contains the control character U+0000 at character 1"
        );
        assert_eq!(
            Question::new("why\u{1b}[31m?").unwrap_err().to_string(),
            "the question contains the control character U+001B at character 4"
        );
        assert!(Question::new("why?\tand\nhow?").is_ok());
    }

    #[test]
    fn blank_questions_are_refused() {
        assert_eq!(Question::new("  \n\t "), Err(QuestionError::Empty));
    }

    #[test]
    fn a_question_at_the_limit_is_accepted_and_one_byte_more_is_refused() {
        assert!(Question::new(&"a".repeat(MAX_QUESTION_BYTES)).is_ok());
        assert_eq!(
            Question::new(&"a".repeat(MAX_QUESTION_BYTES + 1)),
            Err(QuestionError::TooLong {
                bytes: MAX_QUESTION_BYTES + 1,
                limit: MAX_QUESTION_BYTES
            })
        );
    }

    #[test]
    fn surrounding_white_space_is_trimmed() {
        assert_eq!(
            Question::new("  why?  ").map(|q| q.to_string()),
            Ok("why?".to_owned())
        );
    }
}
