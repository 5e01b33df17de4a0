//! `/debug/pprof/goroutine`: Rust has no goroutines, so this is the nearest thing — every
//! thread of the process, each with what it is doing according to the kernel: its name, its
//! scheduler state and the kernel function it sleeps in (`wchan`). Threads in the same place
//! are counted together, as goroutines with the same stack are. The async runtime's live task
//! count is reported beside them (tasks have no stacks to show).

use std::fmt::Write as _;
use std::path::Path;

use super::profile::{Frame, ProfileBuilder};

/// One thread of this process as `/proc/self/task/<tid>` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadInfo {
    /// The kernel thread ID.
    pub tid: u32,
    /// Its name (`comm`).
    pub name: String,
    /// Its state (`R` running, `S` sleeping, `D` disk wait, …) spelled out.
    pub state: String,
    /// The kernel function it waits in, "" when running or not readable.
    pub wchan: String,
}

/// Every thread of this process (Linux `/proc`; empty elsewhere).
pub fn threads() -> Vec<ThreadInfo> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let path = entry.path();
        let read = |f: &str| std::fs::read_to_string(path.join(f)).unwrap_or_default().trim().to_string();
        let name = read("comm");
        let state = state_of(&path);
        let wchan = read("wchan");
        let wchan = if wchan == "0" { String::new() } else { wchan };
        out.push(ThreadInfo { tid, name, state, wchan });
    }
    out.sort_by_key(|t| t.tid);
    out
}

/// The state letter of `stat` (after the parenthesised name, which may itself hold spaces).
fn state_of(task: &Path) -> String {
    let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
    let letter = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).unwrap_or("?");
    match letter {
        "R" => "running",
        "S" => "sleeping",
        "D" => "disk sleep",
        "T" | "t" => "stopped",
        "Z" => "zombie",
        "I" => "idle",
        _ => "unknown",
    }
    .to_string()
}

/// The kernel's place for a thread: where it waits, or its state when it waits nowhere.
fn place(t: &ThreadInfo) -> String {
    if t.wchan.is_empty() {
        format!("[{}]", t.state)
    } else {
        format!("[kernel] {}", t.wchan)
    }
}

/// The threads as a gzipped pprof profile (sample type `threads/count`), stacks
/// `kernel place ← thread name`. `tasks` is the async runtime's live task count, if known.
pub fn profile(threads: &[ThreadInfo], tasks: Option<usize>) -> Vec<u8> {
    let mut b = ProfileBuilder::new(&[("threads", "count")], ("threads", "count"), 1);
    b.timing(std::time::SystemTime::now(), std::time::Duration::ZERO);
    b.comment(&format!("{} threads", threads.len()));
    if let Some(n) = tasks {
        b.comment(&format!("{n} live async tasks"));
    }
    let mut groups: std::collections::BTreeMap<(String, String), i64> = std::collections::BTreeMap::new();
    for t in threads {
        *groups.entry((t.name.clone(), place(t))).or_default() += 1;
    }
    for ((name, place), n) in groups {
        let stack = [vec![Frame::named(place)], vec![Frame::named(format!("thread {name}"))]];
        b.sample(&stack, &[n], &[("thread", &name)]);
    }
    b.finish()
}

/// The `?debug=1` text form: a count line, then one line per thread.
pub fn text(threads: &[ThreadInfo], tasks: Option<usize>) -> String {
    let mut out = format!("thread profile: total {}\n", threads.len());
    if let Some(n) = tasks {
        let _ = writeln!(out, "async tasks: {n} live");
    }
    out.push('\n');
    for t in threads {
        let _ = writeln!(out, "thread {} [{}] {}", t.tid, t.name, place(t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_thread_is_listed_and_counted() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let parked = std::thread::Builder::new().name("parked-here".into()).spawn(move || rx.recv()).expect("spawn");
        // The thread sets its name as it starts.
        let mut list = Vec::new();
        for _ in 0..100 {
            list = threads();
            if list.iter().any(|t| t.name == "parked-here") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let me = list.iter().find(|t| t.name == "parked-here").expect("listed");
        assert!(me.tid > 0);
        let txt = text(&list, Some(7));
        assert!(txt.starts_with(&format!("thread profile: total {}\n", list.len())), "{txt}");
        assert!(txt.contains("async tasks: 7 live") && txt.contains("[parked-here]"), "{txt}");
        let (strings, samples) = super::super::profile::decode::profile(&profile(&list, Some(7)));
        assert!(strings.iter().any(|s| s == "thread parked-here"), "{strings:?}");
        let total: u64 = samples.iter().map(|(_, v)| v[0]).sum();
        assert_eq!(total, list.len() as u64);
        let _ = tx.send(());
        parked.join().expect("join").expect("recv");
    }

    #[test]
    fn state_letters_after_a_name_with_spaces_and_parens() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("stat"), "42 (a (b) c) S 1 2 3").expect("write");
        assert_eq!(state_of(dir.path()), "sleeping");
        std::fs::write(dir.path().join("stat"), "").expect("write");
        assert_eq!(state_of(dir.path()), "unknown");
    }
}
