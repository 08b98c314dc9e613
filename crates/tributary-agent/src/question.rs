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
