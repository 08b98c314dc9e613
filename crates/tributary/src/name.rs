//! Names people read. A source's name is printed in the terminal, on the page, on the timeline's lanes and in
//! metrics labels, so it must show what it is: [`check_name`] refuses the characters that would let a name break
//! the line it is printed on, reorder the text around it, or hide (two names that print alike but differ).
//!
//! Everything else stays legal, spaces and every script included: only what is invisible or rewrites its
//! surroundings is refused.

use std::fmt;

/// Why a character cannot be in a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnsafeCharacter {
    /// A control character (C0, DEL or C1): a line break, a tab, the ESC that starts a terminal escape sequence.
    Control,
    /// U+2028 LINE SEPARATOR or U+2029 PARAGRAPH SEPARATOR: a line break to many renderers.
    LineSeparator,
    /// A bidirectional-text control (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069): it reorders
    /// the text printed after it.
    Bidi,
    /// An invisible character: zero-width characters, joiners, soft hyphen, fillers, variation selectors, tags,
    /// byte-order mark (Unicode's default-ignorable code points, and the interlinear annotation marks).
    Invisible,
}

impl UnsafeCharacter {
    /// What the character is, for a person.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Control => "a control character",
            Self::LineSeparator => "a line or paragraph separator",
            Self::Bidi => "a bidirectional-text control, which reorders the text after it",
            Self::Invisible => "an invisible character",
        }
    }

    /// Whether `character` cannot be in a name, and why.
    pub fn of(character: char) -> Option<Self> {
        if character.is_control() {
            return Some(Self::Control);
        }
        match u32::from(character) {
            0x2028 | 0x2029 => Some(Self::LineSeparator),
            0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069 => Some(Self::Bidi),
            // Default_Ignorable_Code_Point (Unicode 15.1, DerivedCoreProperties.txt), plus U+FFF9..U+FFFB.
            0x00AD
            | 0x034F
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200D
            | 0x2060..=0x2065
            | 0x206A..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF => Some(Self::Invisible),
            _ => None,
        }
    }
}

/// A name holds a character it must not: which one, where, and why. The message shows the character as
/// `U+XXXX`, never as itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameError {
    /// The offending character.
    pub character: char,
    /// Its position in the name, in characters, from 1.
    pub position: usize,
    /// Why it cannot be there.
    pub kind: UnsafeCharacter,
}

impl fmt::Display for NameError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "contains U+{:04X} ({}) at character {}",
            u32::from(self.character),
            self.kind.describe(),
            self.position
        )
    }
}

impl std::error::Error for NameError {}

/// Checks that `name` can be printed as it is: no control character, line separator, bidi control or invisible
/// character ([`UnsafeCharacter`]); the first one found is the error.
pub fn check_name(name: &str) -> Result<(), NameError> {
    match name
        .chars()
        .enumerate()
        .find_map(|(index, character)| Some((index, character, UnsafeCharacter::of(character)?)))
    {
        None => Ok(()),
        Some((index, character, kind)) => Err(NameError {
            character,
            position: index + 1,
            kind,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names with a newline, an escape sequence, U+202E or a zero-width space were accepted, and printed as they
    /// were in terminals, on the page and in metrics labels.
    #[test]
    fn control_bidi_and_invisible_characters_are_refused_by_position() {
        for (name, character, position, kind) in [
            ("news\nkb", '\n', 5, UnsafeCharacter::Control),
            ("\u{1b}[31mnews", '\u{1b}', 1, UnsafeCharacter::Control),
            ("news\u{7f}", '\u{7f}', 5, UnsafeCharacter::Control),
            ("news\u{85}", '\u{85}', 5, UnsafeCharacter::Control),
            ("ab\u{2028}", '\u{2028}', 3, UnsafeCharacter::LineSeparator),
            ("ab\u{202E}cd", '\u{202E}', 3, UnsafeCharacter::Bidi),
            ("\u{2067}x", '\u{2067}', 1, UnsafeCharacter::Bidi),
            ("ne\u{200B}ws", '\u{200B}', 3, UnsafeCharacter::Invisible),
            ("news\u{FEFF}", '\u{FEFF}', 5, UnsafeCharacter::Invisible),
            ("n\u{E0041}", '\u{E0041}', 2, UnsafeCharacter::Invisible),
            ("é\u{00AD}", '\u{00AD}', 2, UnsafeCharacter::Invisible),
        ] {
            assert_eq!(
                check_name(name),
                Err(NameError {
                    character,
                    position,
                    kind
                }),
                "{name:?}"
            );
        }
        assert_eq!(
            check_name("ab\u{202E}cd").unwrap_err().to_string(),
            "contains U+202E (a bidirectional-text control, which reorders the text after it) at character 3"
        );
    }

    #[test]
    fn what_was_legal_and_is_harmless_stays_legal() {
        for name in [
            "weather",
            "kb-2",
            "my source",
            "wiki.fr_2",
            "météo",
            "天气",
            "новости",
            "خبر",
            "",
        ] {
            assert_eq!(check_name(name), Ok(()), "{name:?}");
        }
    }
}
