//! The SMTP conversation as a pure state machine: a command line in, a
//! reply (or "read the message now") out. No IO, no clock: the session in
//! [`super`] reads lines, feeds them here and writes what comes back.
//!
//! The subset of RFC 5321 a mail intake behind an MTA needs: `EHLO`/`HELO`,
//! `MAIL FROM` (with the `SIZE` and `BODY` parameters of RFC 1870 and
//! RFC 6152), `RCPT TO`, `DATA`, `RSET`, `NOOP`, `QUIT` (and `VRFY`, which
//! answers 252 as RFC 5321 allows). No relaying, no `AUTH`, no `STARTTLS`:
//! the MTA in front terminates TLS.

use std::fmt;

/// Longest command line, CRLF included (RFC 5321 section 4.5.3.1.4).
pub const COMMAND_LINE_BYTES_MAX: usize = 512;
/// Longest line of a message, CRLF included (RFC 5321 section 4.5.3.1.6).
pub const TEXT_LINE_BYTES_MAX: usize = 1000;

/// One reply: a code, an enhanced status code (RFC 3463) and a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status code, such as `5.7.1`.
    pub enhanced: &'static str,
    /// What it says; lines are separated by `\n` (a multi-line reply).
    pub text: String,
}

impl Reply {
    /// A reply of one or more lines.
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
        Reply { code, enhanced, text: text.into() }
    }

    /// Whether the client should give up on this message for good.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The bytes on the wire: `250-…` for every line but the last, `250 …`
    /// for the last, each with the enhanced code when it has one. Control
    /// characters in the text become spaces, so that a reason quoting the
    /// client cannot break the reply.
    pub fn to_wire(&self) -> Vec<u8> {
        let lines: Vec<&str> = self.text.split('\n').collect();
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            let separator = if i + 1 == lines.len() { ' ' } else { '-' };
            let line: String = line.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            if self.enhanced.is_empty() {
                out.push_str(&format!("{}{separator}{line}\r\n", self.code));
            } else {
                out.push_str(&format!("{}{separator}{} {line}\r\n", self.code, self.enhanced));
            }
        }
        out.into_bytes()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.text.replace('\n', " / "))
    }
}

/// What the session does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write the reply and read the next command.
    Reply(Reply),
    /// Write `354` and read the message up to the lone dot.
    Data,
    /// Write the reply and close the connection.
    Close(Reply),
}

/// The envelope of the message being sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope<P> {
    /// `MAIL FROM`, lowercased.
    pub sender: String,
    /// What the sender check said about it (the principal it maps to).
    pub principal: P,
    /// `RCPT TO` addresses, as sent.
    pub recipients: Vec<String>,
}

/// The limits the conversation enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest message accepted, in bytes (announced as `SIZE`).
    pub message_bytes_max: usize,
    /// Most recipients of one message.
    pub recipients_max: usize,
}

#[derive(Clone, Debug)]
enum State<P> {
    /// No `EHLO`/`HELO` yet.
    Fresh,
    /// Greeted, no transaction.
    Ready,
    /// `MAIL FROM` accepted.
    Transaction(Envelope<P>),
}

/// One connection's conversation. `P` is what the sender check returns for
/// an accepted sender (the principal), carried to the message.
#[derive(Clone, Debug)]
pub struct Conversation<P> {
    state: State<P>,
    hostname: String,
    limits: Limits,
}

impl<P: Clone> Conversation<P> {
    /// A new conversation of a server calling itself `hostname`.
    pub fn new(hostname: &str, limits: Limits) -> Conversation<P> {
        Conversation { state: State::Fresh, hostname: hostname.to_owned(), limits }
    }

    /// The greeting the server opens with.
    pub fn greeting(&self) -> Reply {
        Reply::new(220, "", format!("{} Klaxon incident intake ESMTP ready", self.hostname))
    }

    /// The envelope of the message whose data is being read (after
    /// [`Step::Data`]); the transaction ends with it: the next message needs
    /// a new `MAIL FROM`.
    pub fn take_envelope(&mut self) -> Option<Envelope<P>> {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Transaction(envelope) if !envelope.recipients.is_empty() => Some(envelope),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Answers one command line (without its CRLF). `check_sender` decides
    /// about a `MAIL FROM` address (lowercased; empty for the null sender):
    /// the principal, or the refusal.
    pub fn command(&mut self, line: &str, check_sender: impl FnOnce(&str) -> Result<P, Reply>) -> Step {
        let (verb, rest) = match line.split_once(' ') {
            Some((verb, rest)) => (verb, rest.trim()),
            None => (line.trim(), ""),
        };
        let verb = verb.to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "HELO" => {
                if rest.is_empty() {
                    return Step::Reply(Reply::new(501, "5.5.4", format!("{verb} needs a domain or address")));
                }
                self.state = State::Ready;
                if verb == "HELO" {
                    return Step::Reply(Reply::new(250, "", format!("{} greets {rest}", self.hostname)));
                }
                let lines = [
                    format!("{} greets {rest}", self.hostname),
                    format!("SIZE {}", self.limits.message_bytes_max),
                    "8BITMIME".to_owned(),
                    "ENHANCEDSTATUSCODES".to_owned(),
                ];
                Step::Reply(Reply::new(250, "", lines.join("\n")))
            }
            "MAIL" => self.mail(rest, check_sender),
            "RCPT" => self.rcpt(rest),
            "DATA" => match &self.state {
                State::Transaction(envelope) if !envelope.recipients.is_empty() => {
                    if !rest.is_empty() {
                        return Step::Reply(Reply::new(501, "5.5.4", "DATA takes no parameters"));
                    }
                    Step::Data
                }
                State::Transaction(_) => Step::Reply(Reply::new(503, "5.5.1", "RCPT TO first")),
                _ => Step::Reply(Reply::new(503, "5.5.1", "MAIL FROM first")),
            },
            "RSET" => {
                if !matches!(self.state, State::Fresh) {
                    self.state = State::Ready;
                }
                Step::Reply(Reply::new(250, "2.0.0", "reset"))
            }
            "NOOP" => Step::Reply(Reply::new(250, "2.0.0", "OK")),
            "QUIT" => Step::Close(Reply::new(221, "2.0.0", format!("{} closing", self.hostname))),
            "VRFY" => Step::Reply(Reply::new(252, "2.5.2", "cannot verify; send the message")),
            "STARTTLS" | "AUTH" => Step::Reply(Reply::new(
                502,
                "5.5.1",
                format!("{verb} is not offered: Klaxon's intake sits behind an MTA that terminates TLS"),
            )),
            "" => Step::Reply(Reply::new(500, "5.5.2", "empty command")),
            _ => Step::Reply(Reply::new(502, "5.5.1", format!("{verb} is not implemented"))),
        }
    }

    fn mail(&mut self, rest: &str, check_sender: impl FnOnce(&str) -> Result<P, Reply>) -> Step {
        match self.state {
            State::Fresh => return Step::Reply(Reply::new(503, "5.5.1", "EHLO or HELO first")),
            State::Transaction(_) => return Step::Reply(Reply::new(503, "5.5.1", "a transaction is open; RSET first")),
            State::Ready => {}
        }
        let Some((address, parameters)) = path(rest, "FROM:") else {
            return Step::Reply(Reply::new(501, "5.5.4", "syntax: MAIL FROM:<address> [SIZE=n]"));
        };
        for parameter in parameters.split_whitespace() {
            let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
            match name.to_ascii_uppercase().as_str() {
                "SIZE" => match value.parse::<u64>() {
                    Ok(size) if size > self.limits.message_bytes_max as u64 => {
                        return Step::Reply(Reply::new(
                            552,
                            "5.3.4",
                            format!(
                                "a message of {size} bytes is over this intake's limit of {} bytes",
                                self.limits.message_bytes_max
                            ),
                        ));
                    }
                    Ok(_) => {}
                    Err(_) => return Step::Reply(Reply::new(501, "5.5.4", format!("SIZE={value} is not a number"))),
                },
                "BODY" if value.eq_ignore_ascii_case("7BIT") || value.eq_ignore_ascii_case("8BITMIME") => {}
                _ => {
                    return Step::Reply(Reply::new(555, "5.5.4", format!("parameter {parameter} is not supported")));
                }
            }
        }
        let sender = address.to_ascii_lowercase();
        match check_sender(&sender) {
            Ok(principal) => {
                self.state = State::Transaction(Envelope { sender, principal, recipients: Vec::new() });
                Step::Reply(Reply::new(250, "2.1.0", "sender OK"))
            }
            Err(refusal) => Step::Reply(refusal),
        }
    }

    fn rcpt(&mut self, rest: &str) -> Step {
        let State::Transaction(envelope) = &mut self.state else {
            return Step::Reply(Reply::new(503, "5.5.1", "MAIL FROM first"));
        };
        let Some((address, parameters)) = path(rest, "TO:") else {
            return Step::Reply(Reply::new(501, "5.5.4", "syntax: RCPT TO:<address>"));
        };
        if !parameters.is_empty() {
            return Step::Reply(Reply::new(555, "5.5.4", "RCPT TO takes no parameters here"));
        }
        if address.is_empty() {
            return Step::Reply(Reply::new(501, "5.1.3", "an empty recipient"));
        }
        if envelope.recipients.len() >= self.limits.recipients_max {
            return Step::Reply(Reply::new(
                452,
                "4.5.3",
                format!("at most {} recipients per message", self.limits.recipients_max),
            ));
        }
        envelope.recipients.push(address.to_owned());
        Step::Reply(Reply::new(250, "2.1.5", "recipient OK"))
    }
}

/// `FROM:<address> params` → the address (without brackets) and the
/// parameters. The prefix is matched without regard to case, and a space
/// after the colon is tolerated.
fn path<'a>(rest: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let head = rest.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = rest[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let (address, parameters) = rest.split_once('>')?;
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some((address, parameters.trim()))
}
