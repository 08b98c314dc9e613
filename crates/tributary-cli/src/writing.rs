//! What a chat model is writing, shown on a terminal while `ask` runs: one line per source, its latest words,
//! redrawn in place as they come and erased before the answer is printed.
//!
//! The words come from the run's live timeline ([`Update::Progress`] under a source's inference). Only a
//! terminal gets them (stderr, where progress goes): a pipe or a file gets the answer alone, as before. The
//! redraw is two ANSI sequences every terminal emulator knows (cursor up, erase below), so no terminal crate.

use std::collections::HashMap;

use tokio_util::sync::CancellationToken;
use tributary::trace::{Activity, Timeline, Update};
use tributary_agent::step::{SYNTHESIS_LANE, source_lane};
use unicode_width::UnicodeWidthChar as _;

use crate::printer::Printer;

/// The lines being written, and how many are on the screen.
#[derive(Debug, Default)]
pub struct Writing {
    /// Each source that wrote, in the order it began, with everything it wrote.
    lines: Vec<(String, String)>,
    /// Lines drawn by the last frame.
    drawn: usize,
}

impl Writing {
    /// Adds `text` to what `source` wrote.
    pub fn push(&mut self, source: &str, text: &str) {
        match self.lines.iter_mut().find(|(name, _)| name == source) {
            Some((_, written)) => written.push_str(text),
            None => self.lines.push((source.to_owned(), text.to_owned())),
        }
    }

    /// What redraws the lines in place on a terminal `width` columns wide: erase the last frame, then each source's
    /// latest words, cut at the left so that each fits on one line.
    pub fn frame(&mut self, width: usize) -> String {
        let mut frame = self.erase();
        for (source, written) in &self.lines {
            let prefix = format!("  {source}: ");
            let room = width.saturating_sub(prefix.chars().count() + 1).max(8);
            frame.push_str(&prefix);
            frame.push_str(&tail(written, room));
            frame.push('\n');
        }
        self.drawn = self.lines.len();
        frame
    }

    /// What erases the last frame (nothing when none is drawn).
    pub fn erase(&mut self) -> String {
        let erase = match self.drawn {
            0 => String::new(),
            lines => format!("\x1b[{lines}A\x1b[J"),
        };
        self.drawn = 0;
        erase
    }
}

/// The end of `text` on one line, at most `room` columns wide, with `…` where it was cut.
fn tail(text: &str, room: usize) -> String {
    let flat: Vec<char> = text
        .trim_start()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let width = |chars: &[char]| chars.iter().map(|c| c.width().unwrap_or(0)).sum::<usize>();
    if width(&flat) <= room {
        return flat.into_iter().collect();
    }
    let mut start = flat.len();
    let mut used = 1; // the ellipsis
    while start > 0 {
        let next = flat[start - 1].width().unwrap_or(0);
        if used + next > room {
            break;
        }
        used += next;
        start -= 1;
    }
    std::iter::once('…')
        .chain(flat[start..].iter().copied())
        .collect()
}

/// Shows on stderr what the chat model writes for each source of the run on `timeline`, until `done` is
/// cancelled; then erases it. `sources` are the agent's source names.
pub async fn show(
    timeline: Timeline,
    sources: Vec<String>,
    printer: Printer,
    done: CancellationToken,
) {
    let mut by_lane: HashMap<String, String> = sources
        .into_iter()
        .map(|source| (source_lane(&source), source))
        .collect();
    // `--synthesize`: the answer across the sources, written after them.
    by_lane.insert(SYNTHESIS_LANE.to_owned(), "in short".to_owned());
    let mut inferences: HashMap<u64, String> = HashMap::new();
    let mut writing = Writing::default();
    let mut cursor = 0;
    loop {
        tokio::select! {
            biased;
            () = done.cancelled() => break,
            () = timeline.wait_for_update(cursor) => {}
        }
        let updates = timeline.updates_since(cursor);
        cursor += updates.len();
        let mut wrote = false;
        for update in updates {
            match update {
                Update::Began {
                    id,
                    lane,
                    activity: Activity::Infer,
                    subject,
                    ..
                } => {
                    // A source's inference runs on a worker's lane and names its source; the synthesis has a
                    // lane of its own.
                    let source = subject
                        .filter(|subject| by_lane.values().any(|source| source == subject))
                        .or_else(|| by_lane.get(&lane).cloned());
                    if let Some(source) = source {
                        inferences.insert(id, source);
                    }
                }
                Update::Progress { id, text, .. } => {
                    if let Some(source) = inferences.get(&id) {
                        writing.push(source, &text);
                        wrote = true;
                    }
                }
                _ => {}
            }
        }
        if wrote {
            printer.note_raw(&writing.frame(printer.width(false)));
        }
    }
    printer.note_raw(&writing.erase());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_gets_a_line_redrawn_in_place_then_erased() {
        let mut writing = Writing::default();
        assert_eq!(writing.erase(), "", "nothing drawn, nothing to erase");
        writing.push("weather", " Take");
        writing.push("weather", " an umbrella");
        assert_eq!(writing.frame(80), "  weather: Take an umbrella\n");
        writing.push("news", "The council\nmet.");
        assert_eq!(
            writing.frame(80),
            "\x1b[1A\x1b[J  weather: Take an umbrella\n  news: The council met.\n"
        );
        assert_eq!(writing.erase(), "\x1b[2A\x1b[J");
        assert_eq!(writing.erase(), "");
    }

    #[test]
    fn a_long_line_shows_its_latest_words() {
        let mut writing = Writing::default();
        writing.push("kb", &"word ".repeat(40));
        writing.push("kb", "last");
        let frame = writing.frame(40);
        let line = frame.trim_end_matches('\n');
        assert!(line.starts_with("  kb: …"), "{line}");
        assert!(line.ends_with("word last"), "{line}");
        assert!(line.chars().count() < 40, "{line}");
        // Wide characters count double.
        assert_eq!(tail("日本語のテキスト", 7), "…キスト");
    }
}
