//! The one colour language of every picture of a run: the terminal chart ([`super::GanttStyle`]), the SVG
//! ([`super::Timeline::render_svg`]) and `tributary serve`'s page (whose stylesheet a test holds to these
//! values). Fetching (waiting on I/O) is blue and inference (CPU) is green everywhere; a failure is red and a
//! cancellation amber.

/// One role's colour: for a web page or an SVG, and for a terminal (an ANSI foreground).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Colour {
    /// `#rrggbb`.
    pub hex: &'static str,
    /// The ANSI escape sequence that sets the foreground.
    pub ansi: &'static str,
}

/// Waiting on a source (I/O).
pub const FETCH: Colour = Colour {
    hex: "#0b5cad",
    ansi: "\x1b[34m",
};

/// Inference on a worker (CPU).
pub const INFER: Colour = Colour {
    hex: "#2a6b3f",
    ansi: "\x1b[32m",
};

/// A failure or a timeout.
pub const FAILED: Colour = Colour {
    hex: "#b3261e",
    ansi: "\x1b[31m",
};

/// Cancelled work, and retries.
pub const CANCELLED: Colour = Colour {
    hex: "#b26a00",
    ansi: "\x1b[33m",
};
