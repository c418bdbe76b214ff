//! The README's demos, run as a new user runs them: `scripts/demo` (the shipped config, the demo
//! backends), then every `$ ` command of README.md, in order, in one bash session, each output
//! compared with the lines the README shows under it. In a shown line `...` stands for any text;
//! a line of just `...` for any number of lines; a command shown without output is run but not
//! checked. A narration line `# lb logs: TEXT` (or `# lb logs (when): TEXT`) waits until lb's log
//! has a line with TEXT. A command ending in `&` has its output sent to a file, as a second
//! terminal would keep it off the first.
//!
//! It needs the shipped config's fixed ports (8080, 9001-9004, 9100, 9900), and its `pkill -f
//! 'lb-demo b='` would hit other tests' backends: so it is ignored in the parallel suite and CI
//! runs it alone (`.ci/run`).

mod common;

use common::{crate_dir, PATIENCE};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// How long `scripts/demo` may take to build and start (a build from a test build's features).
const START: Duration = Duration::from_secs(20 * 60);
/// The demo's ports, from conf/lb.yaml and scripts/demo.
const PORTS: [u16; 7] = [8080, 9001, 9002, 9003, 9004, 9100, 9900];
/// The demo config's state file, deleted first: "delete the file to start the demo from scratch".
const STATE_FILE: &str = "/tmp/lb-state.json";
const DONE: &str = "__readme_command_done__";

/// One `$ ` command of the README with what it shows.
#[derive(Debug, Default)]
struct Step {
    command: String,
    shown: Vec<String>,
    logs: Vec<String>,
}

/// The `$ ` commands of every `sh` block of `readme`, in order.
fn steps(readme: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_sh = false;
    // Whether the last step is in the current block (its output lines follow).
    let mut open = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            open = false;
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_string(),
                ..Step::default()
            });
            open = true;
        } else if let Some(step) = steps.last_mut().filter(|_| open) {
            let text = line.trim_start();
            if let Some(log) = text.strip_prefix("# lb logs").and_then(narrated_log) {
                step.logs.push(log.to_string());
            } else if !text.starts_with('#') {
                step.shown.push(line.trim_end().to_string());
            }
        }
    }
    steps
}

/// `: TEXT` or ` (when): TEXT` → TEXT.
fn narrated_log(rest: &str) -> Option<&str> {
    let rest = match rest.strip_prefix(" (") {
        Some(r) => &r[r.find(')')? + 1..],
        None => rest,
    };
    rest.strip_prefix(": ")
}

/// Whether `line` is `pattern` with each `...` standing for any text; `anchored`: the whole
/// line, else somewhere in it.
fn line_fits(pattern: &str, line: &str, anchored: bool) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return if anchored {
            line == pattern
        } else {
            line.contains(pattern)
        };
    }
    let mut at = match (anchored, line.find(first)) {
        (true, _) if line.starts_with(first) => first.len(),
        (false, Some(p)) => p + first.len(),
        _ => return false,
    };
    for part in &parts[1..parts.len() - 1] {
        match line[at..].find(part) {
            Some(p) => at += p + part.len(),
            None => return false,
        }
    }
    if anchored {
        line.len() >= at + last.len() && line.ends_with(last)
    } else {
        line[at..].contains(last)
    }
}

/// Whether `actual` lines are the `shown` ones (a `...` line: any number of lines).
fn lines_fit(shown: &[String], actual: &[String]) -> bool {
    match shown.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first.trim() == "..." => (0..=actual.len()).any(|n| lines_fit(rest, &actual[n..])),
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, more)| line_fits(first, line, true) && lines_fit(rest, more)),
    }
}

/// The command without its trailing comment (a `#` after a space, outside quotes).
fn without_comment(command: &str) -> &str {
    let mut quote = None;
    let mut prev = ' ';
    for (i, c) in command.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if prev.is_whitespace() => return command[..i].trim_end(),
            _ => {}
        }
        prev = c;
    }
    command.trim_end()
}

/// A process group, sent `SIGTERM` and then `SIGKILL` on drop.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        let kill = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        };
        kill("-TERM");
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        kill("-KILL");
        let _ = self.0.wait();
    }
}

/// Lines `child`'s stdout prints, as they come.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    let out = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// One bash session: commands in, their output (stdout and stderr) out.
struct Shell {
    _group: Group,
    input: ChildStdin,
    output: Receiver<String>,
}

impl Shell {
    fn start(background_log: &str) -> Shell {
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(crate_dir())
            .env("BACKGROUND_LOG", background_log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("bash");
        let input = child.stdin.take().expect("piped");
        let output = lines_of(&mut child);
        let mut shell = Shell {
            _group: Group(child),
            input,
            output,
        };
        shell.run("exec 2>&1");
        shell
    }

    /// Runs `command` and returns what it printed.
    fn run(&mut self, command: &str) -> Vec<String> {
        let command = without_comment(command);
        let command = match command.strip_suffix('&') {
            Some(job) if !job.ends_with('&') => format!("{job} >>\"$BACKGROUND_LOG\" 2>&1 &"),
            _ => command.to_string(),
        };
        writeln!(self.input, "{command}\necho {DONE}").expect("bash is running");
        let end = Instant::now() + Duration::from_secs(120);
        let mut printed = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(line) if line == DONE => return printed,
                Ok(line) => printed.push(line.trim_end().to_string()),
                Err(_) => panic!("`{command}` did not finish in 120 s; it printed {printed:#?}"),
            }
        }
    }
}

/// `scripts/demo` in the background, its output (lb's log) collected.
struct Demo {
    _group: Group,
    log: Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start() -> Demo {
        let mut child = Command::new("bash")
            .args(["-c", "exec scripts/demo 2>&1"])
            .current_dir(crate_dir())
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("scripts/demo");
        let log = lines_of(&mut child);
        let mut demo = Demo {
            _group: Group(child),
            log,
            seen: Vec::new(),
        };
        assert!(demo.wait_for("lb ready (pid ...), serving on http://0.0.0.0:8080", START));
        demo
    }

    /// Waits until lb's log has a line fitting `pattern` (anywhere in it).
    fn wait_for(&mut self, pattern: &str, limit: Duration) -> bool {
        if self.seen.iter().any(|l| line_fits(pattern, l, false)) {
            return true;
        }
        let end = Instant::now() + limit;
        while let Ok(line) = self.log.recv_timeout(end.saturating_duration_since(Instant::now())) {
            let fits = line_fits(pattern, &line, false);
            self.seen.push(line);
            if fits {
                return true;
            }
        }
        false
    }

    fn tail(&self) -> String {
        let from = self.seen.len().saturating_sub(40);
        self.seen[from..].join("\n")
    }
}

#[test]
#[ignore = "uses the shipped config's fixed ports and pkill: .ci/run runs it alone"]
fn the_readme_demos_show_what_the_readme_says() {
    let readme = std::fs::read_to_string(crate_dir().join("README.md")).unwrap();
    let steps = steps(&readme);
    assert!(steps.len() >= 20, "README has {} `$` commands", steps.len());
    let conf = std::fs::read_to_string(crate_dir().join("conf/lb.yaml")).unwrap();
    assert!(
        conf.contains(STATE_FILE),
        "conf/lb.yaml no longer keeps its state in {STATE_FILE}"
    );
    for port in PORTS {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is taken: the demo needs it"
        );
    }
    let _ = std::fs::remove_file(STATE_FILE);
    let background = common::TempDir::new("readme");
    let background_log = background.path("background.log");

    let mut demo = Demo::start();
    let mut shell = Shell::start(background_log.to_str().unwrap());
    for step in &steps {
        let printed = shell.run(&step.command);
        if !step.shown.is_empty() {
            assert!(
                lines_fit(&step.shown, &printed),
                "`{}` printed\n{}\nwhere the README shows\n{}",
                step.command,
                printed.join("\n"),
                step.shown.join("\n")
            );
        }
        for log in &step.logs {
            assert!(
                demo.wait_for(log, PATIENCE),
                "after `{}`, lb never logged `{log}`; its log ends:\n{}",
                step.command,
                demo.tail()
            );
        }
    }
}

#[test]
fn readme_steps_and_patterns_parse_as_the_test_reads_them() {
    let text = "```sh\n$ echo a   # say a\na\n# lb logs (soon): WARN ... b\n$ x &\n```\n```yaml\n$ no\n```\n```sh\nnot output\n```\n";
    let steps = steps(text);
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].shown, ["a"]);
    assert!(steps[1].shown.is_empty(), "{:?}", steps[1]);
    assert_eq!(steps[0].logs, ["WARN ... b"]);
    assert_eq!(without_comment(&steps[0].command), "echo a");
    assert_eq!(
        without_comment("curl -d '{\"a\": \"#1\"}' x # c"),
        "curl -d '{\"a\": \"#1\"}' x"
    );
    assert!(line_fits("a ... c", "a b c", true));
    assert!(!line_fits("a ... c", "a b c d", true));
    assert!(line_fits("a...c", "acbc", true));
    assert!(line_fits("same", "same", true) && !line_fits("same", "same!", true));
    assert!(line_fits("\"ttl\": ...", "\"ttl\": 9.9,", true));
    assert!(line_fits("WARN ... b", "[t WARN x] b", false));
    let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(lines_fit(&lines(&["{", "...", "}"]), &lines(&["{", "x", "y", "}"])));
    assert!(lines_fit(&lines(&["{", "...", "}"]), &lines(&["{", "}"])));
    assert!(!lines_fit(&lines(&["a", "b"]), &lines(&["a"])));
}
