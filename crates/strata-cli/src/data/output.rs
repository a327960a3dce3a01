//! Standard output for people and for pipes: colour only on a terminal (and never with
//! `NO_COLOR`), and a reader that went away (`strata read ... | head`) ends the command
//! quietly instead of failing it.

use std::io::{self, IsTerminal, Write};

/// Whether stdout gets ANSI colours: a terminal, and `NO_COLOR` unset or empty
/// (<https://no-color.org>).
pub(crate) fn colour_enabled() -> bool {
    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    !no_colour && io::stdout().is_terminal()
}

/// How a cell is shown on a terminal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    Plain,
    Header,
    Dim,
    Accent,
}

/// `text` in `tone` when `colour` is on.
pub(crate) fn paint(text: &str, tone: Tone, colour: bool) -> String {
    let code = match tone {
        Tone::Plain => return text.to_owned(),
        Tone::Header => "1",
        Tone::Dim => "2",
        Tone::Accent => "36",
    };
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// Lines to stdout, buffered; remembers when the reader has gone away.
pub(crate) struct Lines {
    out: io::BufWriter<io::Stdout>,
    closed: bool,
}

impl Lines {
    pub(crate) fn new() -> Lines {
        Lines {
            out: io::BufWriter::new(io::stdout()),
            closed: false,
        }
    }

    /// Writes one line; `Ok(false)` once the reader has closed the pipe.
    ///
    /// # Errors
    /// Other write errors (a full disk behind a redirection).
    pub(crate) fn line(&mut self, text: &str) -> anyhow::Result<bool> {
        if self.closed {
            return Ok(false);
        }
        let written = self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        self.settle(written)
    }

    /// Sends what is buffered, for output that must appear now (`tail`).
    ///
    /// # Errors
    /// As [`Lines::line`].
    pub(crate) fn flush(&mut self) -> anyhow::Result<bool> {
        if self.closed {
            return Ok(false);
        }
        let flushed = self.out.flush();
        self.settle(flushed)
    }

    fn settle(&mut self, result: io::Result<()>) -> anyhow::Result<bool> {
        match result {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(false)
            }
            Err(error) => Err(anyhow::Error::new(error)
                .context("cannot write to stdout; check where the output is redirected")),
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.out.flush();
        }
    }
}
