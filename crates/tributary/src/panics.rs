//! The text of a caught panic, shared by everything that turns a panic into an error or an outcome (settle, the
//! thread pool, the inline executor), and by callers that catch a panic a group resumed.

use std::any::Any;

/// The panic's message when it was raised with a string (as `panic!` and `assert!` do), a placeholder otherwise.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_payloads_give_their_text_and_others_a_placeholder() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert_eq!(panic_message(&42_u32), "non-string panic payload");
    }
}
