//! Property tests: random trees of groups and tasks, run to the end, then checked.
//!
//! A tree is groups (`scope`s) whose children are leaves (sleep, then succeed, fail, panic or hang) or more
//! groups; a group may also run a nested group in its body, fail its body, have a deadline, be cancelled from
//! outside through its token, or be dropped by an outer timeout while it runs. After the top scope returns (or
//! panics), the checks are:
//!
//! - **Nothing outlives the scope**: every task and group holds a [`Live`] guard from its first line to its end,
//!   and the count is zero when the top scope has returned, on both runtime flavours.
//! - **Every error is accounted for exactly once**: a group that returned reports each of its leaves that
//!   failed exactly once, among its failures (never twice, never as something else); no leaf's error appears
//!   twice in the tree's error; in a tree with no group dropped by a timeout and no panic, every leaf error
//!   appears in it (a failure deep in a subtree cancelled from above is still reported, as asyncio's nested
//!   task groups report theirs); and a tree that returned `Ok` raised no error anywhere.
//! - **No child code runs after its group shut down, but the step it was due**: a failing leaf or body marks
//!   its group as shut down, with the instant, the moment it returns its error; no leaf or body whose group (or
//!   any group above it) is marked runs another line, except a leaf whose sleep ended at the very instant of
//!   the failure that marked a group above it first (asyncio's rule: a failure cancels the others after the
//!   steps already due at that instant; a stop that came first, a supervisor's, gives no such step). This one
//!   is checked on the current-thread runtime, where "after" is well defined (on the multi-thread runtime a
//!   sibling can be in the middle of a poll on another thread when the failure happens, which is cooperative
//!   cancellation, not a bug).
//!
//! Trees with supervisors ([`Supervisor`]) mix in a third kind of node: a supervisor whose children are leaves,
//! groups or more supervisors, stopped after a while by its shutdown, by the token of its config, or by being
//! dropped (an outer timeout). On top of the checks above, which then cover only errors outside supervisors:
//!
//! - **Siblings are unaffected by failures**: every supervised child's handle says what its code did (a value,
//!   an error, a panic) or that it was cancelled, and on the current-thread runtime no child is cancelled before
//!   its supervisor stops, whatever its siblings did. The supervisor's counters agree with its handles.
//! - **No child runs after its supervisor shut down or was dropped**, and spawning is then refused (the check
//!   above, with the supervisor's flag set as it stops, and strict: a supervisor's stop is not a failure, so
//!   no leaf below it gets the step it was due). A supervised leaf gets no such step either when a failure
//!   above the supervisor cancels it; a leaf of a fail-fast group inside a supervised child does.
//!
//! A second property runs flat groups of leaves (some nested one level down) and checks the rule for failures
//! at the same instant exactly: the first failure is at instant `T`; every leaf due at `T` or earlier ran past
//! its sleep and no other did, and the group reports exactly the errors raised at `T`. A third runs the same
//! group as the code of a supervised child and checks the same through the child's handle.
//!
//! Time is paused on the current-thread runtime (the sleeps cost nothing and the runs are reproducible from
//! proptest's seed); the multi-thread runtime runs real, short sleeps.

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use proptest::prelude::*;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;

/// How a leaf ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Succeed,
    Fail,
    Panic,
    Hang,
}

/// A node of the tree.
#[derive(Debug, Clone)]
enum Node {
    Leaf {
        delay_ms: u64,
        fate: Fate,
    },
    /// A supervisor, stopped after `stop_after_ms` by `stop`.
    Supervisor {
        children: Vec<Node>,
        stop_after_ms: u64,
        stop: Stop,
    },
    Group {
        children: Vec<Node>,
        /// A nested group the body runs itself (not as a child).
        in_body: Option<Box<Node>>,
        /// The body fails after this long (after spawning its children).
        body_fails_after_ms: Option<u64>,
        /// The group's own deadline.
        deadline_ms: Option<u64>,
        /// Cancelled from outside, through its token, after this long.
        cancel_after_ms: Option<u64>,
        /// Dropped by an outer timeout after this long (never at the top of the tree).
        drop_after_ms: Option<u64>,
    },
}

/// How a supervisor is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// [`Supervisor::shutdown`].
    Shutdown,
    /// The token of [`SupervisorConfig::cancelled_by`], then [`Supervisor::join`].
    Token,
    /// Dropped by an outer timeout, running.
    Drop,
}

/// What a supervised child's code did, as seen from inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Returned {
    /// Still running, or cancelled.
    Nothing,
    Value,
    Error,
    Panic,
}

/// What every node of one run shares.
#[derive(Debug, Default)]
struct Run {
    live: AtomicUsize,
    next_id: AtomicUsize,
    /// Leaf ids that returned their error.
    raised: Mutex<BTreeSet<usize>>,
    /// Code that ran after its group (or one above it) shut down: a description per violation.
    violations: Mutex<Vec<String>>,
    /// Errors reported by a group other than exactly once.
    miscounted: Mutex<Vec<String>>,
}

/// A group's view, passed down: the flags of this group and every group above it.
#[derive(Debug, Clone, Default)]
struct Ancestry {
    /// Set when the group shuts down, one per level, the nearest last.
    flags: Vec<Arc<ShutDown>>,
    /// Below a supervisor: errors end at its handles, never in the top scope's error.
    supervised: bool,
    /// The nearest group is a supervisor: a failing child does not shut it down, and a child it cancels gets
    /// no step it was due.
    in_supervisor: bool,
}

/// Whether a group has shut down, as the test sees it: when, whether a failure (a leaf's or the body's) did
/// it, and the mark's place among all marks (what came first within one instant). The first mark stays.
#[derive(Debug, Default)]
struct ShutDown(Mutex<Option<(Instant, Mark, usize)>>);

/// Orders the marks: several groups can shut down at one instant of paused time, and which came first decides.
static MARKS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Failure,
    /// Ended, or stopped by something other than a failure (a deadline, a token, a supervisor's stop).
    Ended,
}

#[derive(Debug)]
enum TreeError {
    Leaf(usize),
    Body,
    Group(Box<GroupError<TreeError>>),
    Timeout,
    Lost,
}

impl std::fmt::Display for TreeError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{self:?}")
    }
}

impl From<ChildLost> for TreeError {
    fn from(_: ChildLost) -> Self {
        TreeError::Lost
    }
}

impl From<SpawnError> for TreeError {
    fn from(_: SpawnError) -> Self {
        TreeError::Lost
    }
}

struct Live(Arc<Run>);

impl Live {
    fn enter(run: &Arc<Run>) -> Self {
        run.live.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(run))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ShutDown {
    fn mark(&self, mark: Mark) {
        self.0
            .lock()
            .expect("shut down")
            .get_or_insert_with(|| (Instant::now(), mark, MARKS.fetch_add(1, Ordering::SeqCst)));
    }

    fn get(&self) -> Option<(Instant, Mark, usize)> {
        *self.0.lock().expect("shut down")
    }
}

impl Ancestry {
    /// The view from inside a fail-fast group with the flag `flag`.
    fn with(&self, flag: Arc<ShutDown>) -> Self {
        let mut flags = self.flags.clone();
        flags.push(flag);
        Self {
            flags,
            supervised: self.supervised,
            in_supervisor: false,
        }
    }

    /// The view from inside a supervisor with the flag `flag`.
    fn supervised_by(&self, flag: Arc<ShutDown>) -> Self {
        let mut flags = self.flags.clone();
        flags.push(flag);
        Self {
            flags,
            supervised: true,
            in_supervisor: true,
        }
    }

    fn shut_down(&self) -> bool {
        self.flags.iter().any(|flag| flag.get().is_some())
    }

    /// Whether the first shutdown of a group above was a failure at this very instant: the failure's
    /// cancellation came after the steps already due. A stop that came before it (a supervisor's) was not a
    /// failure and stopped every step below it.
    fn failed_just_now(&self) -> bool {
        self.flags
            .iter()
            .filter_map(|flag| flag.get())
            .min_by_key(|&(_, _, order)| order)
            .is_some_and(|(at, mark, _)| at == Instant::now() && mark == Mark::Failure)
    }

    /// Marks the innermost group as shut down by a failure, if it is a fail-fast group: a supervisor carries on.
    fn fail(&self) {
        if let Some(own) = self.flags.last().filter(|_| !self.in_supervisor) {
            own.mark(Mark::Failure);
        }
    }
}

impl Run {
    /// A line of code of `what`: a violation if its group or one above it has shut down.
    fn line(&self, ancestry: &Ancestry, what: &str, strict: bool) {
        if strict && ancestry.shut_down() {
            self.violate(what);
        }
    }

    /// A line a leaf runs in the poll its wake-up asked for: allowed after a shutdown if the first to shut a
    /// group above it down was a failure at this very instant (the step was due when it failed), unless the
    /// leaf is a supervisor's child (a supervisor stops its children at once, whatever cancels it).
    fn due_line(&self, ancestry: &Ancestry, what: &str, strict: bool) {
        if ancestry.in_supervisor {
            return self.line(ancestry, what, strict);
        }
        if strict && ancestry.shut_down() && !ancestry.failed_just_now() {
            self.violate(what);
        }
    }

    fn violate(&self, what: &str) {
        self.violations
            .lock()
            .expect("violations")
            .push(format!("{what} ran after its group shut down"));
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Runs a node as the code of a child (or the top): a leaf's life, or a whole group.
fn run_node(
    node: Node,
    run: Arc<Run>,
    ancestry: Ancestry,
    strict: bool,
) -> BoxFuture<Result<(), TreeError>> {
    Box::pin(async move {
        match node {
            Node::Leaf { delay_ms, fate } => {
                let _live = Live::enter(&run);
                let id = run.next_id.fetch_add(1, Ordering::SeqCst);
                run.line(&ancestry, "a leaf's first line", strict);
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                run.due_line(&ancestry, "a leaf after its sleep", strict);
                match fate {
                    Fate::Succeed => Ok(()),
                    Fate::Fail => {
                        if !ancestry.supervised {
                            run.raised.lock().expect("raised").insert(id);
                        }
                        // A fail-fast group shuts down as this error is recorded: from here on its code must not
                        // run, but for the steps already due. A supervisor carries on.
                        ancestry.fail();
                        Err(TreeError::Leaf(id))
                    }
                    Fate::Panic => panic!("leaf {id} panicked"),
                    Fate::Hang => std::future::pending().await,
                }
            }
            Node::Supervisor {
                children,
                stop_after_ms,
                stop,
            } => run_supervisor(children, stop_after_ms, stop, run, ancestry, strict).await,
            Node::Group {
                drop_after_ms: Some(after),
                ..
            } => {
                let node = strip_drop(node);
                match tokio::time::timeout(
                    Duration::from_millis(after),
                    run_node(node, Arc::clone(&run), ancestry, strict),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_elapsed) => Err(TreeError::Timeout),
                }
            }
            Node::Group {
                children,
                in_body,
                body_fails_after_ms,
                deadline_ms,
                cancel_after_ms,
                drop_after_ms: None,
            } => {
                let _live = Live::enter(&run);
                let flag = Arc::new(ShutDown::default());
                let inside = ancestry.with(Arc::clone(&flag));
                let token = CancellationToken::new();
                let mut config = GroupConfig::new().cancelled_by(token.clone());
                if let Some(deadline) = deadline_ms {
                    config = config.deadline(Deadline::after(Duration::from_millis(deadline)));
                }
                let direct_leaves = Arc::new(Mutex::new(BTreeSet::new()));
                let result = {
                    let (run, inside, direct_leaves) =
                        (Arc::clone(&run), inside.clone(), Arc::clone(&direct_leaves));
                    scope(config, move |group| async move {
                        let _live = Live::enter(&run);
                        for (index, child) in children.into_iter().enumerate() {
                            let is_leaf = matches!(child, Node::Leaf { .. });
                            let (run, inside, direct_leaves) =
                                (Arc::clone(&run), inside.clone(), Arc::clone(&direct_leaves));
                            group
                                .spawn(format!("child {index}"), async move {
                                    let result =
                                        run_node(child, Arc::clone(&run), inside, strict).await;
                                    if is_leaf && let Err(TreeError::Leaf(id)) = &result {
                                        direct_leaves.lock().expect("leaves").insert(*id);
                                    }
                                    result
                                })
                                .await?;
                        }
                        if let Some(after) = cancel_after_ms {
                            let token = token.clone();
                            group
                                .spawn("canceller", async move {
                                    tokio::time::sleep(Duration::from_millis(after)).await;
                                    token.cancel();
                                    Ok(())
                                })
                                .await?;
                        }
                        run.line(&inside, "a body after spawning", strict);
                        if let Some(nested) = in_body {
                            run_node(*nested, Arc::clone(&run), inside.clone(), strict).await?;
                            run.line(&inside, "a body after its nested group", strict);
                        }
                        match body_fails_after_ms {
                            Some(after) => {
                                tokio::time::sleep(Duration::from_millis(after)).await;
                                run.line(&inside, "a failing body", strict);
                                inside.fail();
                                Err(TreeError::Body)
                            }
                            None => Ok(()),
                        }
                    })
                    .await
                };
                // Deadline and outside cancellation shut the group down too; they are not failures to check.
                flag.mark(Mark::Ended);
                match result {
                    Ok(()) => Ok(()),
                    Err(error) => {
                        check_accounting(&run, &direct_leaves, &error);
                        Err(TreeError::Group(Box::new(error)))
                    }
                }
            }
        }
    })
}

/// Runs a supervisor node: spawns its children, stops it after `stop_after_ms`, then checks each child's handle
/// against what the child's code did, and the counters against the handles. Always `Ok`: a supervisor keeps its
/// children's failures.
async fn run_supervisor(
    children: Vec<Node>,
    stop_after_ms: u64,
    stop: Stop,
    run: Arc<Run>,
    ancestry: Ancestry,
    strict: bool,
) -> Result<(), TreeError> {
    let _live = Live::enter(&run);
    let flag = Arc::new(ShutDown::default());
    let inside = ancestry.supervised_by(Arc::clone(&flag));
    let token = CancellationToken::new();
    let supervisor = Supervisor::new(SupervisorConfig::new().cancelled_by(token.clone()));
    let spawner = supervisor.handle();
    let mut spawned = Vec::new();
    for (index, child) in children.into_iter().enumerate() {
        let returned = Arc::new(Mutex::new(Returned::Nothing));
        let code = {
            let (run, inside, returned) = (Arc::clone(&run), inside.clone(), Arc::clone(&returned));
            async move {
                let result = AssertUnwindSafe(run_node(child, run, inside, strict))
                    .catch_unwind()
                    .await;
                *returned.lock().expect("returned") = match &result {
                    Ok(Ok(())) => Returned::Value,
                    Ok(Err(_)) => Returned::Error,
                    Err(_) => Returned::Panic,
                };
                result.unwrap_or_else(|payload| std::panic::resume_unwind(payload))
            }
        };
        let handle = spawner
            .spawn(format!("child {index}"), code)
            .expect("a supervisor takes children until it stops");
        spawned.push((handle, returned));
    }
    let stop_after = Duration::from_millis(stop_after_ms);
    if stop == Stop::Drop {
        // Dropped while it runs: its children are aborted and handed to the enclosing group, which joins them.
        let _elapsed = tokio::time::timeout(stop_after, async move {
            let _owned = (supervisor, spawned);
            std::future::pending::<()>().await;
        })
        .await;
        flag.mark(Mark::Ended);
        return Ok(());
    }
    tokio::time::sleep(stop_after).await;
    // Nothing cancels a supervised child before its supervisor stops: not a sibling's failure or panic. Checked
    // on the current-thread runtime, where nothing above can be cancelling this very supervisor meanwhile.
    let mut early = Vec::new();
    for (handle, _) in &mut spawned {
        let outcome = handle.now_or_never();
        if strict && matches!(outcome, Some(Err(ChildError::Cancelled { .. }))) {
            run.violations.lock().expect("violations").push(format!(
                "supervised `{}` was cancelled before its supervisor stopped",
                handle.name()
            ));
        }
        early.push(outcome);
    }
    let stats = match stop {
        Stop::Shutdown => {
            flag.mark(Mark::Ended);
            supervisor.shutdown().await
        }
        // Not flagged until joined, like a fail-fast group's outside token: the supervisor notices the token
        // when one of its children is next polled, so a grandchild woken at this same instant may run one more
        // step (see `SupervisorConfig::cancelled_by`).
        Stop::Token | Stop::Drop => {
            token.cancel();
            let stats = supervisor.join().await;
            flag.mark(Mark::Ended);
            stats
        }
    };
    if spawner
        .spawn("late", async { Ok::<_, TreeError>(()) })
        .is_ok()
    {
        run.violations
            .lock()
            .expect("violations")
            .push("a stopped supervisor took a child".to_owned());
    }
    let mut counted = SupervisorStats::default();
    for ((handle, returned), early) in spawned.into_iter().zip(early) {
        let name = handle.name().to_owned();
        let outcome = match early {
            Some(outcome) => outcome,
            None => handle.await,
        };
        let returned = *returned.lock().expect("returned");
        let consistent = match &outcome {
            Ok(()) => {
                counted.succeeded += 1;
                returned == Returned::Value
            }
            Err(ChildError::Failed { .. }) => {
                counted.failed += 1;
                returned == Returned::Error
            }
            Err(ChildError::Panicked { .. }) => {
                counted.panicked += 1;
                returned == Returned::Panic
            }
            // Cancelled by the stop; a drained child may have returned its inner groups' cancellation.
            Err(ChildError::Cancelled { .. }) => {
                counted.cancelled += 1;
                matches!(returned, Returned::Nothing | Returned::Error)
            }
        };
        if !consistent {
            run.miscounted.lock().expect("miscounted").push(format!(
                "supervised `{name}` did {returned:?}, its handle says {outcome:?}"
            ));
        }
    }
    // A dropped group inside a child hands its aborted tasks, and a panic it had caught, to the supervisor,
    // which counts that panic without a handle to carry it.
    counted.spawned = stats.spawned;
    counted.panicked = counted.panicked.max(stats.panicked);
    if counted != stats {
        run.miscounted.lock().expect("miscounted").push(format!(
            "the supervisor counted {stats:?}, its handles {counted:?}"
        ));
    }
    Ok(())
}

/// Each leaf of the group that returned its error is among the group's failures exactly once.
fn check_accounting(
    run: &Run,
    direct_leaves: &Mutex<BTreeSet<usize>>,
    error: &GroupError<TreeError>,
) {
    let reported: Vec<usize> = error
        .failed
        .iter()
        .filter_map(|failure| match failure.error {
            TreeError::Leaf(id) => Some(id),
            _ => None,
        })
        .collect();
    let expected = direct_leaves.lock().expect("leaves").clone();
    let unique: BTreeSet<usize> = reported.iter().copied().collect();
    if unique.len() != reported.len() || unique != expected {
        run.miscounted.lock().expect("miscounted").push(format!(
            "leaves that failed {expected:?}, reported {reported:?}"
        ));
    }
}

fn strip_drop(node: Node) -> Node {
    match node {
        Node::Group {
            children,
            in_body,
            body_fails_after_ms,
            deadline_ms,
            cancel_after_ms,
            ..
        } => Node::Group {
            children,
            in_body,
            body_fails_after_ms,
            deadline_ms,
            cancel_after_ms,
            drop_after_ms: None,
        },
        leaf => leaf,
    }
}

fn leaf(max_delay: u64, panics: bool) -> impl Strategy<Value = Node> {
    let fates = if panics {
        prop_oneof![
            6 => Just(Fate::Succeed),
            3 => Just(Fate::Fail),
            1 => Just(Fate::Panic),
            2 => Just(Fate::Hang),
        ]
        .boxed()
    } else {
        prop_oneof![
            6 => Just(Fate::Succeed),
            3 => Just(Fate::Fail),
            2 => Just(Fate::Hang),
        ]
        .boxed()
    };
    (0..=max_delay, fates).prop_map(|(delay_ms, fate)| Node::Leaf { delay_ms, fate })
}

/// Trees up to three levels of groups deep, with up to four children a group.
fn tree(max_delay: u64, panics: bool) -> impl Strategy<Value = Node> {
    let maybe = move || proptest::option::weighted(0.3, 0..=max_delay);
    leaf(max_delay, panics).prop_recursive(3, 24, 4, move |inner| {
        (
            proptest::collection::vec(inner.clone(), 0..4),
            proptest::option::weighted(0.3, inner),
            maybe(),
            maybe(),
            maybe(),
            maybe(),
        )
            .prop_map(
                |(children, in_body, body_fails, deadline, cancel, drop_after)| Node::Group {
                    children,
                    in_body: in_body.map(Box::new),
                    body_fails_after_ms: body_fails,
                    deadline_ms: deadline,
                    cancel_after_ms: cancel,
                    drop_after_ms: drop_after,
                },
            )
    })
}

/// Trees up to three levels deep of fail-fast groups and supervisors, with up to four children a node.
fn tree_with_supervisors(max_delay: u64) -> impl Strategy<Value = Node> {
    let maybe = move || proptest::option::weighted(0.3, 0..=max_delay);
    let stop = prop_oneof![Just(Stop::Shutdown), Just(Stop::Token), Just(Stop::Drop)];
    leaf(max_delay, true).prop_recursive(3, 24, 4, move |inner| {
        let group = (
            proptest::collection::vec(inner.clone(), 0..4),
            proptest::option::weighted(0.3, inner.clone()),
            maybe(),
            maybe(),
            maybe(),
            maybe(),
        )
            .prop_map(
                |(children, in_body, body_fails, deadline, cancel, drop_after)| Node::Group {
                    children,
                    in_body: in_body.map(Box::new),
                    body_fails_after_ms: body_fails,
                    deadline_ms: deadline,
                    cancel_after_ms: cancel,
                    drop_after_ms: drop_after,
                },
            );
        let supervisor = (
            proptest::collection::vec(inner, 0..4),
            0..=max_delay,
            stop.clone(),
        )
            .prop_map(|(children, stop_after_ms, stop)| Node::Supervisor {
                children,
                stop_after_ms,
                stop,
            });
        prop_oneof![group, supervisor]
    })
}

/// Every leaf id in an error tree, with repeats.
fn leaf_ids(error: &TreeError, ids: &mut Vec<usize>) {
    match error {
        TreeError::Leaf(id) => ids.push(*id),
        TreeError::Group(group) => {
            if let Some(body) = &group.body_error {
                leaf_ids(body, ids);
            }
            for failure in &group.failed {
                leaf_ids(&failure.error, ids);
            }
        }
        TreeError::Body | TreeError::Timeout | TreeError::Lost => {}
    }
}

/// Whether any group of the tree is dropped by a timeout, or any leaf panics: then errors may be lost.
fn may_lose_errors(node: &Node) -> bool {
    match node {
        Node::Leaf { fate, .. } => *fate == Fate::Panic,
        // Below a supervisor, errors end at its handles and panics are caught there: none is the top's to lose.
        Node::Supervisor { .. } => false,
        Node::Group {
            children,
            in_body,
            drop_after_ms,
            ..
        } => {
            drop_after_ms.is_some()
                || children.iter().any(may_lose_errors)
                || in_body.as_deref().is_some_and(may_lose_errors)
        }
    }
}

/// Runs `node` under a top group (never dropped, ended by `deadline_ms` at the latest) and checks the
/// properties.
async fn check_tree(node: Node, strict: bool, deadline_ms: u64) -> Result<(), TestCaseError> {
    let run = Arc::new(Run::default());
    let complete = !may_lose_errors(&node);
    let top = Node::Group {
        children: vec![node],
        in_body: None,
        body_fails_after_ms: None,
        deadline_ms: Some(deadline_ms),
        cancel_after_ms: None,
        drop_after_ms: None,
    };
    let outcome = AssertUnwindSafe(run_node(top, Arc::clone(&run), Ancestry::default(), strict))
        .catch_unwind()
        .await;
    prop_assert_eq!(
        run.live.load(Ordering::SeqCst),
        0,
        "a task or group outlived the top scope"
    );
    let violations = run.violations.lock().expect("violations").clone();
    prop_assert!(violations.is_empty(), "{:?}", violations);
    let miscounted = run.miscounted.lock().expect("miscounted").clone();
    prop_assert!(miscounted.is_empty(), "{:?}", miscounted);
    let raised = run.raised.lock().expect("raised").clone();
    match outcome {
        Ok(Ok(())) => {
            prop_assert!(
                raised.is_empty(),
                "the tree succeeded, yet leaves failed: {:?}",
                raised
            );
        }
        Ok(Err(error)) => {
            let mut ids = Vec::new();
            leaf_ids(&error, &mut ids);
            let unique: BTreeSet<usize> = ids.iter().copied().collect();
            prop_assert_eq!(
                unique.len(),
                ids.len(),
                "an error reported twice: {:?}",
                ids
            );
            prop_assert!(
                unique.is_subset(&raised),
                "an error nobody raised: {:?}",
                ids
            );
            if complete {
                prop_assert_eq!(&unique, &raised, "a leaf's error was lost: {:?}", error);
            }
        }
        Err(_panic) => {}
    }
    Ok(())
}

/// A leaf of a flat group: sleeps `delay_ms` (at least 1, so that every leaf has started before anything can
/// fail), then ends as `fate` says. A `nested` leaf is the one child of a group run by a child of the flat group.
#[derive(Debug, Clone)]
struct TimedLeaf {
    delay_ms: u64,
    fate: Fate,
    nested: bool,
}

fn timed_leaf() -> impl Strategy<Value = TimedLeaf> {
    let fates = prop_oneof![
        4 => Just(Fate::Succeed),
        3 => Just(Fate::Fail),
        1 => Just(Fate::Panic),
        1 => Just(Fate::Hang),
    ];
    // Four instants for up to six leaves: most runs have several leaves due at the same instant.
    (1..=4_u64, fates, any::<bool>()).prop_map(|(delay_ms, fate, nested)| TimedLeaf {
        delay_ms,
        fate,
        nested,
    })
}

/// What the flat group of [`check_same_instant`] ended with: its result, or the panic it resumed.
type FlatOutcome = Result<Result<(), GroupError<TreeError>>, Box<dyn std::any::Any + Send>>;

/// Runs `leaves` in one group (bounded by a deadline, for the leaves that hang) and checks the same-instant
/// rule exactly: with `T` the instant of the first failure (error or panic), the leaves that ran past their
/// sleep are exactly those due at `T` or before, and the group reports exactly the errors raised at `T`, or
/// resumes a panic raised at `T`. With `supervised`, the group is the code of a supervisor's child and its
/// outcome is read from the child's handle: a fail-fast group keeps its rule under a supervisor.
async fn check_same_instant(leaves: Vec<TimedLeaf>, supervised: bool) -> Result<(), TestCaseError> {
    let woke = Arc::new(Mutex::new(BTreeSet::new()));
    let spawned = leaves.clone();
    let woke_inside = Arc::clone(&woke);
    let config = GroupConfig::new().deadline(Deadline::after(Duration::from_millis(100)));
    let group = scope(config, move |group| async move {
        for (id, leaf) in spawned.into_iter().enumerate() {
            let woke = Arc::clone(&woke_inside);
            let life = async move {
                tokio::time::sleep(Duration::from_millis(leaf.delay_ms)).await;
                woke.lock().expect("woke").insert(id);
                match leaf.fate {
                    Fate::Succeed => Ok(()),
                    Fate::Fail => Err(TreeError::Leaf(id)),
                    Fate::Panic => panic!("leaf {id} panicked"),
                    Fate::Hang => std::future::pending::<Result<(), TreeError>>().await,
                }
            };
            if leaf.nested {
                let runner = scope(GroupConfig::new(), move |inner| async move {
                    inner.spawn(format!("leaf {id}"), life).await?;
                    Ok(())
                });
                group
                    .spawn(format!("runner {id}"), async move {
                        runner
                            .await
                            .map_err(|error| TreeError::Group(Box::new(error)))
                    })
                    .await?;
            } else {
                group.spawn(format!("leaf {id}"), life).await?;
            }
        }
        Ok::<(), TreeError>(())
    });
    let outcome: FlatOutcome = if supervised {
        let supervisor = Supervisor::new(SupervisorConfig::new());
        let child = supervisor
            .spawn("flat group", group)
            .expect("a new supervisor takes children");
        let outcome: FlatOutcome = match child.await {
            Ok(()) => Ok(Ok(())),
            Err(ChildError::Failed { error, .. }) => Ok(Err(error)),
            // The handle carries the panic's message, not its payload: only whether there was one is checked.
            Err(ChildError::Panicked { message, .. }) => Err(Box::new(message)),
            Err(cancelled) => {
                return Err(TestCaseError::fail(format!(
                    "nothing cancels the flat group: {cancelled:?}"
                )));
            }
        };
        let stats = supervisor.shutdown().await;
        prop_assert_eq!(
            stats.panicked,
            u64::from(outcome.is_err()),
            "panics counted"
        );
        outcome
    } else {
        AssertUnwindSafe(group).catch_unwind().await
    };

    let first_failure = leaves
        .iter()
        .filter(|leaf| matches!(leaf.fate, Fate::Fail | Fate::Panic))
        .map(|leaf| leaf.delay_ms)
        .min();
    let at_first_failure = |leaf: &TimedLeaf, fates: &[Fate]| {
        Some(leaf.delay_ms) == first_failure && fates.contains(&leaf.fate)
    };
    let due: BTreeSet<usize> = (0..leaves.len())
        .filter(|&id| first_failure.is_none_or(|instant| leaves[id].delay_ms <= instant))
        .collect();
    let woke = woke.lock().expect("woke").clone();
    prop_assert_eq!(&woke, &due, "the leaves that ran past their sleep");
    let raised: BTreeSet<usize> = (0..leaves.len())
        .filter(|&id| at_first_failure(&leaves[id], &[Fate::Fail]))
        .collect();
    let panicked = leaves
        .iter()
        .any(|leaf| at_first_failure(leaf, &[Fate::Panic]));
    match outcome {
        Err(_panic) => prop_assert!(panicked, "a panic nobody raised"),
        Ok(_) if panicked => prop_assert!(false, "a panic at the first failure was lost"),
        Ok(Ok(())) => prop_assert!(raised.is_empty(), "errors lost: {:?}", raised),
        Ok(Err(error)) => {
            let mut ids = Vec::new();
            leaf_ids(&TreeError::Group(Box::new(error)), &mut ids);
            let reported: BTreeSet<usize> = ids.iter().copied().collect();
            prop_assert_eq!(reported.len(), ids.len(), "an error reported twice");
            prop_assert_eq!(
                reported,
                raised,
                "the errors of the first failure's instant"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Failures at the same instant, on paused time (only there is "the same instant" exact: the multi-thread
    /// runtime can poll a failing child on one worker while the timer driver is still waking its siblings).
    #[test]
    fn failures_at_the_same_instant(leaves in proptest::collection::vec(timed_leaf(), 1..=6)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        runtime.block_on(check_same_instant(leaves, false))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The same, the flat group running as a supervised child's code: a supervisor does not change the rule of
    /// a fail-fast group inside it.
    #[test]
    fn failures_at_the_same_instant_in_a_supervised_child(
        leaves in proptest::collection::vec(timed_leaf(), 1..=6),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        runtime.block_on(check_same_instant(leaves, true))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Paused time on the current-thread runtime: every property, the strict one included.
    #[test]
    fn random_trees_on_the_current_thread_runtime(node in tree(50, true)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        runtime.block_on(check_tree(node, true, 1_000))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Real time on the multi-thread runtime: nothing outlives the scope, errors counted once.
    #[test]
    fn random_trees_on_the_multi_thread_runtime(node in tree(4, true)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(check_tree(node, false, 30))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Supervisors among the groups, paused time on the current-thread runtime: every property, the strict ones
    /// included.
    #[test]
    fn random_trees_with_supervisors_on_the_current_thread_runtime(node in tree_with_supervisors(50)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        runtime.block_on(check_tree(node, true, 1_000))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Supervisors among the groups, real time on the multi-thread runtime: nothing outlives the top scope,
    /// handles and counters agree with what the children did.
    #[test]
    fn random_trees_with_supervisors_on_the_multi_thread_runtime(node in tree_with_supervisors(4)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(check_tree(node, false, 30))?;
    }
}
