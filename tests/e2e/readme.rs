//! The README is a promise: its ```` ```sh ```` blocks, run in order with
//! bash against real processes, as a new user follows them on a fresh
//! machine. A walkthrough that trips (an incident id that does not exist at
//! that point, a port still taken, a process missing its token) fails here,
//! naming the README's line and showing the command's output and the
//! servers' logs.
//!
//! How the README is read (`README.md`, "Tests", says the same to writers):
//!
//! - Every ```` ```sh ```` block runs, in order, in one bash session: the
//!   reader's terminal, so variables and `export`s carry over from block to
//!   block. Its working folder is a temp dir holding a copy of `deploy/` (a
//!   fresh checkout); `klaxond` and `klaxon` from this build are on `PATH`.
//! - A command is a line with its continuations (a trailing `\`, an open
//!   quote). Each must exit 0; its output (stdout and stderr) is kept.
//! - `# -> X` as a command's comment (or alone on the line after it): the
//!   command's output must contain X, the first word after the arrow or a
//!   `` `backquoted text` ``. Reads (`klaxon list|show|history|pages|severity|
//!   oncall|timeline|metrics|actions|trends|audit`, except `klaxon oncall override`
//!   and `klaxon oncall swap`, and `curl` without data) are
//!   retried for up to 30 s while they fail or lack X: the services react to
//!   a report asynchronously, as they do for a person typing.
//! - Servers (`klaxond up`, `klaxond serve ROLE`, `nats-server`) start in the
//!   background, each as if in its own terminal: with a fresh terminal's
//!   environment, none of the session's variables. The test waits until a
//!   `klaxond` prints where it listens (and where its HTTP intake listens),
//!   or until NATS accepts connections, and fails if it exits first. All are
//!   killed at the end, also when the test fails.
//! - `<!-- readme-test: stop the servers -->` before a block: the servers
//!   started so far get Ctrl-C (SIGINT to their process group) and are
//!   waited for, because the README tells the reader to stop them there.
//! - `<!-- readme-test: skip: REASON -->` before a block: not run.
//! - `# interactive` as a line's comment: not run (it waits for a person).
//!
//! Mappings, so that the README can say what a person types:
//!
//! - `cargo run --release -p klaxond -- ARGS` and `target/release/klaxond`
//!   are `klaxond` from this build; `cargo build …` and `cargo install …`
//!   run nothing (this build is on `PATH`); `scripts/test` runs nothing (it
//!   is the suite this test is part of).
//! - `/usr/sbin/nats-server` and `nats-server` are the test's nats-server
//!   (`NATS_SERVER_BIN`, else `PATH`, `/usr/sbin`, `/usr/bin`).
//! - Ports: every default port (gRPC 7600, HTTP 7680, the log server 7601,
//!   the services 7611 to 7615, NATS 4222) is replaced by a free loopback
//!   port: in the commands' text, in the copy of `deploy/klaxon.toml` (plus
//!   a `[cluster]` table naming them when it has none), `KLAXON_SERVER` for the CLI,
//!   `KLAXON_HTTP_LISTEN`, `KLAXON_LISTEN` for `klaxond up` and `-p` for
//!   `nats-server`. So the test never fights a Klaxon the developer runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use klaxon_tests::nats::{NatsServer, nats_server_bin};
use klaxon_tests::{Klaxond, auth, binary};

/// The default ports the README names.
const DEFAULT_PORTS: [u16; 9] = [7600, 7680, 7601, 7611, 7612, 7613, 7614, 7615, 4222];

/// How long a read is retried, and a server may take to listen.
const READ_RETRY: Duration = Duration::from_secs(30);
const SERVER_START: Duration = Duration::from_secs(60);
/// How long one block may run.
const BLOCK_LIMIT: Duration = Duration::from_secs(300);

/// One ```` ```sh ```` block of the README.
#[derive(Debug)]
struct Block {
    /// The line of its opening fence (1-based).
    line: usize,
    skip: Option<String>,
    stop_servers: bool,
    commands: Vec<Shell>,
}

/// One command of a block, with its continuation lines.
#[derive(Debug, Clone)]
struct Shell {
    /// Its first line in the README (1-based).
    line: usize,
    text: String,
    expect: Option<String>,
    interactive: bool,
}

/// The blocks of a Markdown text, with their markers and commands.
fn blocks(markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "```sh" {
            if lines[i].trim_start().starts_with("```") {
                // Another language's block: skip to its end.
                i += 1;
                while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        let fence = i;
        let mut block = Block { line: fence + 1, skip: None, stop_servers: false, commands: Vec::new() };
        // The markers: the comment lines just above the fence.
        let mut above = fence;
        while above > 0 {
            let marker = lines[above - 1].trim();
            let Some(marker) = marker.strip_prefix("<!-- readme-test:").and_then(|m| m.strip_suffix("-->")) else {
                break;
            };
            let marker = marker.trim();
            if let Some(reason) = marker.strip_prefix("skip") {
                block.skip = Some(reason.trim_start_matches(':').trim().to_owned());
            } else if marker == "stop the servers" {
                block.stop_servers = true;
            } else {
                panic!("README.md line {above}: unknown readme-test marker {marker:?}");
            }
            above -= 1;
        }
        i += 1;
        let start = i;
        while i < lines.len() && lines[i].trim() != "```" {
            i += 1;
        }
        block.commands = commands(&lines[start..i], start + 1);
        blocks.push(block);
        i += 1;
    }
    blocks
}

/// Splits a block's lines (the first is README line `first`) into commands.
fn commands(lines: &[&str], first: usize) -> Vec<Shell> {
    let mut commands: Vec<Shell> = Vec::new();
    let mut current: Option<Shell> = None;
    let (mut single, mut double) = (false, false);
    for (k, line) in lines.iter().enumerate() {
        let mut comment = None;
        let mut escaped = false;
        let mut code_end = line.len();
        let mut previous = ' ';
        for (at, c) in line.char_indices() {
            if escaped {
                escaped = false;
            } else if single {
                single = c != '\'';
            } else if c == '\\' {
                escaped = true;
            } else if double {
                double = c != '"';
            } else if c == '\'' {
                single = true;
            } else if c == '"' {
                double = true;
            } else if c == '#' && previous.is_whitespace() {
                comment = Some(line[at + 1..].trim().to_owned());
                code_end = at;
                break;
            }
            previous = c;
        }
        let code = line[..code_end].trim_end();
        let continued = single || double || (comment.is_none() && code.ends_with('\\'));
        match current.as_mut() {
            Some(command) => {
                command.text.push('\n');
                command.text.push_str(line);
            }
            None if code.trim().is_empty() => {
                // A comment alone: `# -> X` belongs to the command before.
                if let (Some(comment), Some(last)) = (&comment, commands.last_mut())
                    && last.expect.is_none()
                {
                    last.expect = expectation(comment);
                }
                continue;
            }
            None => {
                current = Some(Shell { line: first + k, text: (*line).to_owned(), expect: None, interactive: false });
            }
        }
        if !continued {
            let mut command = current.take().expect("a command");
            if let Some(comment) = comment {
                command.expect = expectation(&comment);
                command.interactive = comment.starts_with("interactive");
            }
            commands.push(command);
        }
    }
    assert!(current.is_none(), "README.md line {first}: a block ends inside a command (an open quote or a `\\`)");
    commands
}

/// `-> X` or ``-> `X Y` ``: what the output must contain.
fn expectation(comment: &str) -> Option<String> {
    let rest = comment.strip_prefix("->")?.trim_start();
    if let Some(quoted) = rest.strip_prefix('`') {
        return Some(quoted.split('`').next().unwrap_or_default().to_owned());
    }
    rest.split_whitespace().next().map(str::to_owned)
}

/// What the test does with a command.
#[derive(Debug, PartialEq)]
enum Action {
    /// Nothing (a build, the test suite, a person's step).
    Nothing,
    /// Start it in the background: a server.
    Server(Server),
    /// Run it in the session; `read` ones are retried.
    Run { read: bool },
}

#[derive(Debug, PartialEq)]
enum Server {
    Klaxond { http: bool, up: bool },
    Nats,
}

/// A command's text after the mappings of the module's doc comment.
fn map(text: &str, ports: &BTreeMap<u16, u16>) -> (String, Action) {
    let mut text =
        text.replace("cargo run --release -p klaxond -- ", "klaxond ").replace("target/release/klaxond", "klaxond");
    for (default, port) in ports {
        text = text.replace(&format!("127.0.0.1:{default}"), &format!("127.0.0.1:{port}"));
    }
    // The program, after any `NAME=value` assignments.
    let words: Vec<&str> = text.split_whitespace().collect();
    let program_at = words.iter().position(|w| !w.contains('=')).unwrap_or(0);
    let program = words.get(program_at).copied().unwrap_or_default();
    let argument = |k: usize| words.get(program_at + k).copied().unwrap_or_default();
    let action = match program {
        "cargo" if matches!(argument(1), "build" | "install") => Action::Nothing,
        "scripts/test" => Action::Nothing,
        "nats-server" | "/usr/sbin/nats-server" => {
            let nats = format!("{} -p {}", nats_server_bin().display(), ports[&4222]);
            text = text.replacen(program, &nats, 1);
            Action::Server(Server::Nats)
        }
        "klaxond" if argument(1) == "up" => Action::Server(Server::Klaxond { http: true, up: true }),
        "klaxond" if argument(1) == "serve" => {
            Action::Server(Server::Klaxond { http: argument(2) == "intake", up: false })
        }
        // `klaxon oncall override|swap` write: never retried.
        "klaxon" if argument(1) == "oncall" && matches!(argument(2), "override" | "swap") => {
            Action::Run { read: false }
        }
        "klaxon" => Action::Run {
            read: matches!(
                argument(1),
                "list"
                    | "show"
                    | "history"
                    | "pages"
                    | "severity"
                    | "oncall"
                    | "timeline"
                    | "metrics"
                    | "actions"
                    | "trends"
                    | "audit"
            ),
        },
        "curl" => Action::Run { read: !words.iter().any(|w| *w == "-d" || w.starts_with("--data")) },
        _ => Action::Run { read: false },
    };
    (text, action)
}

/// A server the README started, its process group killed when dropped.
struct Running {
    child: Child,
    line: usize,
    text: String,
    log: PathBuf,
}

impl Running {
    /// The last lines of its output.
    fn tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg("--")
            .arg(format!("-{}", self.child.id()))
            .stderr(Stdio::null())
            .status();
    }

    /// Ctrl-C, and waits for it (SIGKILL after 30 s).
    fn stop(mut self) {
        self.signal("INT");
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                eprintln!("README.md line {}: `{}` did not stop within 30 s of Ctrl-C", self.line, self.text);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.signal("KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reader: a bash session, the servers it started, and where it runs.
struct Reader {
    dir: PathBuf,
    env: Vec<(String, String)>,
    ports: BTreeMap<u16, u16>,
    bash: Child,
    stdin: ChildStdin,
    markers: mpsc::Receiver<String>,
    servers: Vec<Running>,
    started: usize,
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.bash.kill();
        let _ = self.bash.wait();
        // The servers, last started first.
        while let Some(server) = self.servers.pop() {
            drop(server);
        }
    }
}

impl Reader {
    fn new(dir: &Path) -> Reader {
        let bin = binary("klaxond").parent().expect("the target folder").to_path_buf();
        assert!(binary("klaxon").exists());
        let nats = nats_server_bin();
        let path = format!(
            "{}:{}:{}",
            bin.display(),
            nats.parent().expect("nats-server's folder").display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        let ports: BTreeMap<u16, u16> = DEFAULT_PORTS.iter().map(|&p| (p, klaxon_tests::ports::reserve())).collect();
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let env = vec![
            ("PATH".to_owned(), path),
            ("HOME".to_owned(), home.display().to_string()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("RUST_LOG".to_owned(), std::env::var("KLAXON_TEST_LOG").unwrap_or_else(|_| "info".into())),
            ("NO_COLOR".to_owned(), "1".to_owned()),
            ("KLAXON_SERVER".to_owned(), format!("http://127.0.0.1:{}", ports[&7600])),
            ("KLAXON_HTTP_LISTEN".to_owned(), format!("127.0.0.1:{}", ports[&7680])),
        ];
        let mut bash = Command::new("bash")
            .args(["--norc", "--noprofile"])
            .current_dir(dir)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start bash");
        let stdin = bash.stdin.take().expect("piped stdin");
        let stdout = bash.stdout.take().expect("piped stdout");
        let (tx, markers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Reader { dir: dir.to_path_buf(), env, ports, bash, stdin, markers, servers: Vec::new(), started: 0 }
    }

    /// Copies `deploy/` into the working folder, the configuration with
    /// this run's ports.
    fn checkout(&self) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        crate::distributed::copy_dir(&root.join("deploy"), &self.dir.join("deploy"));
        let config = self.dir.join("deploy/klaxon.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        for (default, port) in &self.ports {
            text = text.replace(&format!("127.0.0.1:{default}"), &format!("127.0.0.1:{port}"));
        }
        // A [cluster] table of its own names the default addresses, mapped
        // above; without one, the defaults are added with this run's ports.
        if text.lines().any(|l| l.trim() == "[cluster]") {
            std::fs::write(&config, text).unwrap();
            return;
        }
        let p = |default: u16| self.ports[&default];
        text.push_str(&format!(
            "\n# Added by the README test: free ports.\n[cluster]\nnats_url = \"nats://127.0.0.1:{}\"\n\
             log = \"127.0.0.1:{}\"\nintake = \"127.0.0.1:{}\"\nseverity = \"127.0.0.1:{}\"\n\
             paging = \"127.0.0.1:{}\"\nnotifier = \"127.0.0.1:{}\"\nreview = \"127.0.0.1:{}\"\n",
            p(4222),
            p(7601),
            p(7611),
            p(7612),
            p(7613),
            p(7614),
            p(7615)
        ));
        std::fs::write(&config, text).unwrap();
    }

    /// Everything the servers said, for a failure message.
    fn servers_said(&self) -> String {
        let mut said = String::new();
        for server in &self.servers {
            said.push_str(&format!(
                "\n--- README.md line {}: `{}` (last lines) ---\n{}\n",
                server.line,
                server.text,
                server.tail()
            ));
        }
        said
    }

    /// Runs one block.
    fn run(&mut self, block: &Block) {
        if block.stop_servers {
            while let Some(server) = self.servers.pop() {
                server.stop();
            }
        }
        if block.skip.is_some() {
            return;
        }
        // Consecutive session commands go to bash together; a server starts
        // between them.
        let mut batch: Vec<(Shell, String, bool)> = Vec::new();
        for command in &block.commands {
            if command.interactive {
                continue;
            }
            let (text, action) = map(&command.text, &self.ports);
            match action {
                Action::Nothing => {}
                Action::Run { read } => batch.push((command.clone(), text, read)),
                Action::Server(server) => {
                    self.session(block, std::mem::take(&mut batch));
                    self.start(command, &text, server);
                }
            }
        }
        self.session(block, batch);
    }

    /// Runs commands in the bash session and checks each.
    fn session(&mut self, block: &Block, commands: Vec<(Shell, String, bool)>) {
        if commands.is_empty() {
            return;
        }
        let id = self.started;
        self.started += commands.len();
        let files = self.dir.join("readme-test");
        std::fs::create_dir_all(&files).unwrap();
        let mut script = String::new();
        for (k, (command, text, read)) in commands.iter().enumerate() {
            let n = id + k;
            let out = files.join(format!("{n}.out"));
            let rc = files.join(format!("{n}.rc"));
            let expect = files.join(format!("{n}.expect"));
            let check = match &command.expect {
                Some(x) => {
                    std::fs::write(&expect, x).unwrap();
                    format!("grep -qF -f '{}' '{}'", expect.display(), out.display())
                }
                None => "true".to_owned(),
            };
            let tries = if *read { READ_RETRY.as_millis() / 200 } else { 1 };
            script.push_str(&format!(
                "__readme_try=0\nwhile :; do\n{{\n{text}\n}} > '{out}' 2>&1 < /dev/null\n__readme_rc=$?\n\
                 if [ $__readme_rc -eq 0 ] && {check}; then break; fi\n\
                 __readme_try=$((__readme_try + 1)); [ $__readme_try -ge {tries} ] && break\nsleep 0.2\ndone\n\
                 echo $__readme_rc > '{rc}'\n\
                 if [ $__readme_rc -ne 0 ] || ! {check}; then return 0; fi\n",
                out = out.display(),
                rc = rc.display(),
            ));
        }
        let path = files.join(format!("block-{id}.sh"));
        std::fs::write(&path, script).unwrap();
        writeln!(self.stdin, "source '{}'; echo __readme_done_{id}", path.display()).expect("write to bash");
        self.stdin.flush().unwrap();
        let deadline = Instant::now() + BLOCK_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.markers.recv_timeout(left) {
                Ok(line) if line == format!("__readme_done_{id}") => break,
                Ok(_) => {}
                Err(_) => panic!(
                    "README.md block at line {}: did not finish within {BLOCK_LIMIT:?}{}",
                    block.line,
                    self.servers_said()
                ),
            }
        }
        for (k, (command, _, _)) in commands.iter().enumerate() {
            let n = id + k;
            let output = std::fs::read_to_string(files.join(format!("{n}.out"))).unwrap_or_default();
            let rc = std::fs::read_to_string(files.join(format!("{n}.rc"))).expect("a command before it failed");
            let rc = rc.trim();
            assert!(
                rc == "0",
                "README.md line {}: `{}` exited {rc}:\n{output}{}",
                command.line,
                command.text,
                self.servers_said()
            );
            eprintln!("README.md line {}: ran `{}`", command.line, command.text);
            if let Some(x) = &command.expect {
                assert!(
                    output.contains(x.as_str()),
                    "README.md line {}: `{}` did not print {x:?} (its `# -> {x}`):\n{output}{}",
                    command.line,
                    command.text,
                    self.servers_said()
                );
            }
        }
    }

    /// Starts a server in its own process group and fresh environment, and
    /// waits until it serves.
    fn start(&mut self, command: &Shell, text: &str, server: Server) {
        let log = self.dir.join(format!("readme-test/server-{}.log", command.line));
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let file = std::fs::File::create(&log).unwrap();
        let mut process = Command::new("bash");
        process
            .args(["--norc", "--noprofile", "-c", text])
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0);
        if matches!(server, Server::Klaxond { up: true, .. }) {
            process.env("KLAXON_LISTEN", format!("127.0.0.1:{}", self.ports[&7600]));
        }
        let child = process.spawn().expect("start a server");
        let mut running = Running { child, line: command.line, text: command.text.clone(), log };
        let deadline = Instant::now() + SERVER_START;
        loop {
            let ready = match server {
                Server::Nats => TcpStream::connect(("127.0.0.1", self.ports[&4222])).is_ok(),
                Server::Klaxond { http, .. } => {
                    let said = std::fs::read_to_string(&running.log).unwrap_or_default();
                    said.contains("klaxond listening on") && (!http || said.contains("klaxond http on"))
                }
            };
            if ready {
                break;
            }
            if let Ok(Some(status)) = running.child.try_wait() {
                panic!(
                    "README.md line {}: `{}` exited ({status}) before it served:\n{}{}",
                    command.line,
                    command.text,
                    running.tail(),
                    self.servers_said()
                );
            }
            assert!(
                Instant::now() < deadline,
                "README.md line {}: `{}` did not serve within {SERVER_START:?}:\n{}",
                command.line,
                command.text,
                running.tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("README.md line {}: serving `{}`", command.line, command.text);
        self.servers.push(running);
    }
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README.md")
}

#[test]
fn the_readme_works_when_followed_top_to_bottom() {
    let blocks = blocks(&readme());
    assert!(blocks.len() >= 6, "the README has its walkthrough blocks: {blocks:#?}");
    let dir = tempfile::tempdir().unwrap();
    let mut reader = Reader::new(dir.path());
    reader.checkout();
    for block in &blocks {
        reader.run(block);
    }
    // A server that died on the way is a trip too, even if no later
    // command noticed.
    let mut exited = String::new();
    for server in &mut reader.servers {
        if let Ok(Some(status)) = server.child.try_wait() {
            exited.push_str(&format!(
                "README.md line {}: `{}` exited ({status}) before the end:\n{}\n",
                server.line,
                server.text,
                server.tail()
            ));
        }
    }
    assert!(exited.is_empty(), "{exited}");
}

#[test]
fn the_readme_blocks_are_read_as_documented() {
    let text = "intro\n<!-- readme-test: stop the servers -->\n```sh\n\
                A=$(echo 'x\n# not a comment') # -> `x y`\n\
                klaxon list \\\n  --json   # -> INC-3 and more words\n\
                # -> ignored: the command before has one\n\
                klaxon watch   # interactive: waits\n\
                echo 1\n# -> 1\n```\n\
                ```toml\n[a]\n```\n\
                <!-- readme-test: skip: needs a person -->\n```sh\nfoo\n```\n";
    let blocks = blocks(text);
    assert_eq!(blocks.len(), 2, "{blocks:#?}");
    assert!(blocks[0].stop_servers && blocks[0].skip.is_none());
    assert_eq!(blocks[1].skip.as_deref(), Some("needs a person"));
    let c = &blocks[0].commands;
    assert_eq!(c.len(), 4, "{c:#?}");
    assert_eq!((c[0].line, c[0].expect.as_deref()), (4, Some("x y")));
    assert_eq!((c[1].line, c[1].expect.as_deref()), (6, Some("INC-3")));
    assert!(c[1].text.ends_with("--json   # -> INC-3 and more words"));
    assert!(c[2].interactive && !c[0].interactive);
    assert_eq!(c[3].expect.as_deref(), Some("1"));

    let ports: BTreeMap<u16, u16> = DEFAULT_PORTS.iter().map(|&p| (p, p + 1)).collect();
    let (text, action) = map("cargo run --release -p klaxond -- up --config deploy/klaxon.toml", &ports);
    assert_eq!(
        (text.as_str(), action),
        ("klaxond up --config deploy/klaxon.toml", Action::Server(Server::Klaxond { http: true, up: true }))
    );
    let (text, action) = map("curl -s http://127.0.0.1:7680/status/public", &ports);
    assert_eq!((text.as_str(), action), ("curl -s http://127.0.0.1:7681/status/public", Action::Run { read: true }));
    assert_eq!(map("KLAXON_TOKEN=$M klaxon report --title t", &ports).1, Action::Run { read: false });
    assert_eq!(map("scripts/test   # all", &ports).1, Action::Nothing);
    assert_eq!(map("cargo build --release -p klaxond", &ports).1, Action::Nothing);
}

/// A service without its token is refused by the log server, and what it
/// is told names what a service reads (its service token file), not the
/// CLI's `KLAXON_TOKEN`: in its own log at start, and in the answer to a
/// call it cannot carry out.
#[test]
fn a_service_refused_by_the_log_server_is_told_what_a_service_reads() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let data = dir.path().join("log");
    let log = Klaxond::serve("log", &["--data-dir", data.to_str().unwrap(), "--nats", &nats.url], &[]);
    let tokens = data.join("tokens.toml");
    // Intake with the token file but no service token of its own, its
    // output kept as an operator would see it.
    let said = dir.path().join("intake.log");
    let file = std::fs::File::create(&said).unwrap();
    let child = Command::new(binary("klaxond"))
        .args(["serve", "intake", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(["--nats", &nats.url, "--log-server", &log.address])
        .env("KLAXON_TOKENS_FILE", &tokens)
        .env("RUST_LOG", "warn")
        .env_remove("KLAXON_SERVICE_TOKEN_FILE")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .process_group(0)
        .spawn()
        .expect("start klaxond serve intake");
    let intake = Running { child, line: 0, text: "klaxond serve intake".into(), log: said.clone() };
    let deadline = Instant::now() + SERVER_START;
    let address = loop {
        let text = std::fs::read_to_string(&said).unwrap_or_default();
        if let Some(rest) = text.split("klaxond listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "intake did not listen:\n{}", intake.tail());
        std::thread::sleep(Duration::from_millis(50));
    };
    let url = format!("http://{address}");
    let out = klaxon_tests::klaxon(&url, "maria", &["report", "--title", "Checkout fails", "--service", "payments"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a report through a refused intake fails: {stderr}");
    for told in [stderr.to_string(), intake.tail()] {
        assert!(told.contains("the log server refused this process"), "{told}\nintake said:\n{}", intake.tail());
        assert!(told.contains("KLAXON_SERVICE_TOKEN_FILE") && told.contains("--service-token-file"), "{told}");
        assert!(!told.contains("as KLAXON_TOKEN"), "a service is not told to set the CLI's variable: {told}");
    }
    assert!(intake.tail().contains("the log server refuses this process"), "{}", intake.tail());
    // With its token it works: the refusal was the token, nothing else.
    drop(intake);
    let service_token = dir.path().join("service.token");
    auth::write_service_token(&service_token);
    let intake = Klaxond::serve(
        "intake",
        &["--nats", &nats.url, "--log-server", &log.address, "--http-listen", "127.0.0.1:0"],
        &[
            ("KLAXON_TOKENS_FILE", tokens.to_str().unwrap()),
            ("KLAXON_SERVICE_TOKEN_FILE", service_token.to_str().unwrap()),
        ],
    );
    let id = klaxon_tests::klaxon_ok(
        &intake.url,
        "maria",
        &["report", "--title", "Checkout fails", "--service", "payments"],
    );
    assert_eq!(id.trim(), "INC-1");
}

/// `docs/operations.md`'s Prometheus scrape configuration lists exactly the
/// metrics addresses the systemd units serve: every `klaxond serve` role
/// but the gateway (which has no metrics) has one, intake on its HTTP
/// address and the others on `--metrics-listen`.
#[test]
fn the_scrape_config_lists_the_metrics_address_of_every_unit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut served = std::collections::BTreeSet::new();
    let mut roles = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(root.join("deploy/systemd")).unwrap() {
        let unit = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let Some(exec) = unit.lines().find_map(|l| l.strip_prefix("ExecStart=/usr/local/bin/klaxond serve ")) else {
            continue;
        };
        let words: Vec<&str> = exec.split_whitespace().collect();
        let role = words[0];
        roles.insert(role.to_owned());
        let metrics = words.iter().position(|w| *w == "--metrics-listen").map(|i| words[i + 1].to_owned());
        match role {
            "gateway" => assert!(metrics.is_none(), "the gateway has no metrics to serve: {exec}"),
            // Intake serves them on http_listen (deploy/klaxon.toml).
            "intake" => {
                served.insert("127.0.0.1:7680".to_owned());
            }
            _ => {
                served.insert(metrics.unwrap_or_else(|| panic!("{role}'s unit passes no --metrics-listen: {exec}")));
            }
        }
    }
    let expected: std::collections::BTreeSet<String> =
        ["log", "intake", "severity", "paging", "notifier", "review", "gateway"]
            .iter()
            .map(|r| (*r).to_owned())
            .collect();
    assert_eq!(roles, expected, "a unit for every role");
    let operations = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    let scrape = operations.split("scrape_configs:").nth(1).expect("a scrape config").split("```").next().unwrap();
    let scraped: std::collections::BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- targets: [\""))
        .map(|t| t.trim_end_matches("\"]").to_owned())
        .collect();
    assert_eq!(scraped, served, "docs/operations.md scrapes what the units serve");
    assert!(
        operations.contains("apt-get install -y nats-server") && operations.contains("target/release/klaxon "),
        "the systemd steps install nats-server and the klaxon CLI"
    );
}
