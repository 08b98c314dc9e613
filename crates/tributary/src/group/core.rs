//! The one engine under every group: [`scope`](super::scope), [`OwnedGroup`](super::OwnedGroup),
//! [`Supervisor`](super::Supervisor), [`settle`](super::settle) and the completion policies
//! ([`first_success`](super::first_success), [`settle_until`](super::settle_until)) all spawn, cancel, join and
//! report through [`Shared`].
//!
//! # How no descendant outlives its scope
//!
//! A child is a tokio task the group tracks (`Children`). The group's join (the end of a scope, an owned group's
//! shutdown) waits until that set is empty, so every child has *ended*, not just been told to stop. Two things
//! make this hold for the whole tree, whatever cancels what and on whichever runtime:
//!
//! - **Cancellation happens at a poll boundary, and reaches down at once.** A child is cancelled by its token,
//!   checked before the child is polled (and before its very first poll): once the group shuts down, a child's
//!   code does not run again, but for the one poll a started child was already due when a failure shut the
//!   group (or a group above it) down (see [`run_child`]). A group created inside a child takes a child token
//!   of that child's token, so the cancellation reaches every level below in the same instant. The child's
//!   future is then dropped inside its own task, so the task ends right after.
//! - **Dropped groups hand their tasks up.** Dropping a child's future drops every group inside it (a scope in
//!   a child's code, an owned group a child owns). A dropped group cannot wait (a destructor cannot await), so it
//!   aborts its tasks and hands the set to the *enclosing* group, the group whose child or body was running the
//!   code that created it (a task-local, [`ENCLOSING`]). The enclosing group adds a reaper task that joins them;
//!   its own join waits for the reaper. An aborted task ends at its next poll boundary, and its own nested groups
//!   hand their tasks up the same way, so the whole subtree is joined before the outermost joining scope
//!   returns. A group with no enclosing group (the top of a tree) that is dropped cannot hand its tasks to
//!   anyone: they are aborted and end on their own, unwaited. That is the one case the documentation of
//!   [`scope`](super::scope) warns about; cancelling through a token or a deadline instead always joins.
//!
//! A child counts itself out of its group as its task ends (an atomic count, which is what the join waits on)
//! and removes its handle if the group's lock is free at that moment; a spawn prunes the handles of children that
//! ended while the lock was busy. So a long-lived group holds only the children still running (plus, under
//! contention, a bounded number of finished handles), however many it ran before. Panics are caught around the child *and* around its destruction (a
//! destructor that panics while the group cancels it), recorded, and resumed by the group's owner; a supervisor,
//! which isolates failures, has a panic sink that reports them instead.

use std::any::Any;
use std::future::Future;
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll, Wake, Waker};

use futures::FutureExt as _;
use futures::task::AtomicWaker;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::deadline::Deadline;
use super::fail_fast::{CancelledChild, ChildFailure, GroupConfig, GroupError, ShutdownCause};

tokio::task_local! {
    /// The group whose child (or body) is running: the parent of any group created here, and where a group
    /// dropped here hands its tasks.
    static ENCLOSING: Enclosing;
}

/// The code that is running: which group it belongs to, and its context (token, inner groups).
#[derive(Clone)]
struct Enclosing {
    group: Arc<dyn Adopt>,
    code: Arc<CodeContext>,
}

/// Ticks once each time something shuts a group down (a failure, or a stop: the deadline, a token, a shutdown,
/// a drop with children left) or cancels a child alone, anywhere in the process: a clock that orders a child's
/// wake-up against the shutdowns that reach it. A child woken before the tick of a failure (at the same
/// instant, by what it was waiting for) still runs the poll that was due; one woken by the failure or after it
/// does not, nor one a stop reached first (see [`run_child`]). Only shutdowns write it, which are rare (a group
/// that ends by itself, its children joined, takes no tick); a wake-up only reads it, so it costs no contention.
static SHUTDOWN_CLOCK: AtomicU64 = AtomicU64::new(0);

/// "Never": nothing shut the group down, or the child was not woken since its last poll.
const NEVER: u64 = u64::MAX;

/// Takes a tick of the [`SHUTDOWN_CLOCK`] for a shutdown, noted as a group's `shut_down_at` is: the tick
/// doubled, plus one if a failure caused it. The earliest of two notes is the smaller.
fn shutdown_tick(failure: bool) -> u64 {
    let tick = SHUTDOWN_CLOCK.fetch_add(1, Ordering::SeqCst) + 1;
    tick << 1 | u64::from(failure)
}

/// The code of one child or one body: what cancels it, how many groups that wind down by themselves (scopes,
/// settles) created in it are still running, and whether one of them ended with an error, so that a cancelled
/// child can be polled until they have reported. One allocation per child, shared by its task, its handle and
/// the task-local.
///
/// A child is cancelled by its group's token or alone (its handle's `cancel`). Its own token, a child token of
/// the group's that groups created in the child hang under, is made only when first needed: most children
/// create no group, and making a child token (and dropping it) locks the group token's node, which every other
/// child's start and end contends for.
#[derive(Debug)]
pub(crate) struct CodeContext {
    /// This code's own token, once made; set at creation to the group's token for a body (or settle tasks and
    /// reapers, which are never cancelled alone).
    own: OnceLock<CancellationToken>,
    /// Cancelled alone, whether or not `own` exists yet.
    cancelled_alone: AtomicBool,
    /// The [`shutdown_tick`] of that cancellation, or [`NEVER`]: a stop for every group created in this code.
    cancelled_alone_at: AtomicU64,
    /// Woken when cancelled alone.
    alone: AtomicWaker,
    running_groups: AtomicUsize,
    failed: AtomicBool,
    /// The task's own waker, for a child polled through [`WakeRecorded`]: woken by the child's waker (this
    /// context) once it has noted the wake-up.
    task: AtomicWaker,
    /// The [`SHUTDOWN_CLOCK`] at the child's first wake-up since its last poll, or [`NEVER`].
    woken_at: AtomicU64,
}

/// Counts a group in the code it was created in, for as long as it runs.
pub(crate) struct InnerGroup(Option<Arc<CodeContext>>);

/// State shared by a group's owner, every `Group` handle and every child task.
pub(crate) struct Shared<E> {
    /// Cancelled when the group shuts down; every child watches a child token of it. A child token of the
    /// enclosing child's token when the group is nested, so it is cancelled with that child.
    pub(crate) token: CancellationToken,
    /// The token of [`GroupConfig::cancelled_by`]: cancels the group from outside.
    outside: Option<CancellationToken>,
    /// The concurrency limit's slots, if there is a limit.
    pub(crate) slots: Option<Arc<Semaphore>>,
    pub(crate) limit: usize,
    pub(crate) deadline: Deadline,
    /// The group this one was created in, if any: where its tasks go if it is dropped unjoined.
    parent: Option<Arc<dyn Adopt>>,
    /// This group, as the `ENCLOSING` value of its children.
    me: Weak<Shared<E>>,
    /// The code this group was created in: told when the group ends with an error.
    created_in: Option<Arc<CodeContext>>,
    /// The [`shutdown_tick`] of what first shut this group down, saying whether it was a failure (a child's or
    /// the body's error or panic) or a stop, or [`NEVER`]: not shut down, or only through the token of a group
    /// above or of the code it was created in, whose own note then counts.
    shut_down_at: AtomicU64,
    /// Children whose task has not ended: what the join waits on. Incremented under the state lock (with the
    /// spawn), decremented by the ending task without it.
    live: AtomicUsize,
    /// Notified when `live` drops to zero.
    idle: Notify,
    state: Mutex<State<E>>,
    /// The group's `tracing` span (`group`, with its policy): a child of the span it was created in, the
    /// parent of its body's and its children's spans.
    pub(crate) span: tracing::Span,
    /// Set for a group that isolates failures (a supervisor): takes the panics caught outside a child's own
    /// code (a destructor run as the child is aborted, an adopted task) instead of `State::panic`, where they
    /// would cancel the group and resume on its owner.
    panic_sink: OnceLock<PanicSink>,
}

/// Where a group that isolates failures reports a panic no child's handle can carry.
pub(crate) type PanicSink = Box<dyn Fn(PanicPayload) + Send + Sync>;

/// Never held across an `.await`.
pub(crate) struct State<E> {
    /// The running children's tasks; a child removes its own entry as its task ends.
    pub(crate) children: Children,
    /// Every child has been joined (or the group was dropped): no more spawns, no more adoptions.
    pub(crate) closed: bool,
    pub(crate) shutdown: Option<(ShutdownCause, Instant)>,
    pub(crate) body_error: Option<E>,
    pub(crate) failed: Vec<ChildFailure<E>>,
    pub(crate) cancelled: Vec<CancelledChild>,
    /// The first panic of a child, the body or an adopted task, resumed once every child is joined.
    pub(crate) panic: Option<Box<dyn Any + Send>>,
}

/// How a child ended, when it did not produce a value.
pub(crate) enum ChildExit<E> {
    Failed(E),
    Panicked(Box<dyn Any + Send>),
    Cancelled,
}

/// A group as the enclosing group of code: it can take over the joining of another group's aborted tasks, and
/// its token is the parent of its children's own tokens.
pub(crate) trait Adopt: Send + Sync {
    /// Makes this group's join wait for `orphans`; if this group is closed, hands them further up.
    fn adopt(&self, orphans: Orphans);
    /// The group's token.
    fn token(&self) -> &CancellationToken;
    /// The [`shutdown_tick`] of what first shut this group down, or cancelled the code it was created in alone,
    /// or [`NEVER`].
    fn shut_down_at(&self) -> u64;
    /// The group this one was created in, if any.
    fn parent(&self) -> Option<&Arc<dyn Adopt>>;
}

/// Aborted tasks of a dropped group (or a blocking thread of a dropped child), as a future that ends when they
/// all have, with the first panic among them.
pub(crate) struct Orphans(Pin<Box<dyn Future<Output = Option<PanicPayload>> + Send>>);

/// What a caught panic carries.
type PanicPayload = Box<dyn Any + Send>;

/// Aborts every child still in the group when the group's owner (a scope future, an owned group) is dropped
/// before joining them, and hands them to the enclosing group to join.
///
/// Children hold the shared state, which holds their `JoinSet`: without this guard that cycle would keep them
/// running after an outer timeout dropped the scope.
pub(crate) struct AbortOnDrop<E: Send + 'static>(pub(crate) Arc<Shared<E>>);

impl<E: Send + 'static> Drop for AbortOnDrop<E> {
    fn drop(&mut self) {
        if self.0.running() > 0 {
            self.0.stop();
        } else {
            // Ended, or never started a child: nothing below can be polled again, so no tick is needed.
            self.0.token.cancel();
        }
        let children = {
            let mut state = self.0.lock();
            state.closed = true;
            mem::take(&mut state.children)
        };
        if children.is_empty() {
            return;
        }
        let tasks = children.abort_all();
        hand_up(
            self.0.parent.as_ref(),
            Orphans::of_tasks(Arc::clone(&self.0), tasks),
        );
    }
}

impl<E> Shared<E> {
    /// Children whose task has not ended.
    pub(crate) fn running(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<E>> {
        // No code panics while holding this lock, so a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<E> Shared<E>
where
    E: Send + 'static,
{
    /// A new group configured by `config`, a child of the group whose code is running, if any.
    pub(crate) fn new(config: &GroupConfig, policy: &'static str) -> Arc<Self> {
        let enclosing = ENCLOSING.try_with(Enclosing::clone).ok();
        let token = match &enclosing {
            Some(enclosing) => enclosing.code.token(enclosing.group.token()).child_token(),
            None => CancellationToken::new(),
        };
        let created_in = enclosing
            .as_ref()
            .map(|enclosing| Arc::clone(&enclosing.code));
        let parent = enclosing.map(|enclosing| enclosing.group);
        let limit = config
            .max_concurrency
            .map_or(usize::MAX, |limit| limit.get());
        Arc::new_cyclic(|me| Self {
            token,
            outside: config.cancelled_by.clone(),
            slots: config
                .max_concurrency
                .map(|limit| Arc::new(Semaphore::new(limit.get()))),
            limit,
            deadline: config.deadline,
            parent,
            me: me.clone(),
            created_in,
            shut_down_at: AtomicU64::new(NEVER),
            live: AtomicUsize::new(0),
            idle: Notify::new(),
            span: tracing::info_span!("group", policy),
            panic_sink: OnceLock::new(),
            state: Mutex::new(State {
                children: Children::default(),
                closed: false,
                shutdown: None,
                body_error: None,
                failed: Vec::new(),
                cancelled: Vec::new(),
                panic: None,
            }),
        })
    }

    /// This group as the enclosing group of `code`.
    fn as_enclosing(&self, code: &Arc<CodeContext>) -> Enclosing {
        Enclosing {
            group: self
                .me
                .upgrade()
                .expect("a group is alive while its code runs"),
            code: Arc::clone(code),
        }
    }

    /// Runs `future` (a scope's body) as code of this group: groups it creates are this group's children.
    pub(crate) async fn run_as_body<F: Future>(
        &self,
        code: &Arc<CodeContext>,
        future: F,
    ) -> F::Output {
        ENCLOSING
            .scope(self.as_enclosing(code), future)
            .instrument(self.span.clone())
            .await
    }

    /// Whether the group is shutting down: its token, or the outside token, was cancelled.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
            || self
                .outside
                .as_ref()
                .is_some_and(CancellationToken::is_cancelled)
    }

    /// Whether `token` (the group's, or a child's token of it) is cancelled, or the outside token is; the
    /// outside token shuts the whole group down, as in [`Self::cancelled`].
    pub(crate) fn check_cancelled(&self, token: &CancellationToken) -> bool {
        if token.is_cancelled() {
            return true;
        }
        let outside = self
            .outside
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled);
        if outside {
            self.shut_down(ShutdownCause::Cancelled);
        }
        outside
    }

    /// Resolves when `token` (the group's, or a child's token of it) is cancelled, or the outside token is; the
    /// outside token shuts the whole group down, so that everything below sees it at once.
    pub(crate) async fn cancelled(&self, token: &CancellationToken) {
        match &self.outside {
            None => token.cancelled().await,
            Some(outside) => {
                tokio::select! {
                    biased;
                    () = token.cancelled() => {}
                    () = outside.cancelled() => self.shut_down(ShutdownCause::Cancelled),
                }
            }
        }
    }

    /// Registers `task` as a child, unless the group refuses new children. The task runs as code of this group.
    ///
    /// Checked under the lock that failures are recorded under, so a child spawned concurrently with the first
    /// failure is either refused here or sees the cancelled token before its first poll.
    /// `code` holds the child's own token: groups the child creates are cancelled with it.
    /// `span` is the child's own span (a child of [`Shared::span`]): the task runs in it.
    pub(crate) fn start(
        &self,
        code: &Arc<CodeContext>,
        span: tracing::Span,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> bool {
        let state = self.lock();
        if state.refuses_spawn() || self.is_cancelled() {
            return false;
        }
        // Without a subscriber that wants the span, the child is spawned as it is: no wrapper to poll through.
        if span.is_disabled() {
            self.spawn_tracked(state, code, task);
        } else {
            self.spawn_tracked(state, code, task.instrument(span));
        }
        true
    }

    /// Spawns `task` as a tracked child: reserves its entry under the lock (so the group's join waits for it),
    /// spawns it with the lock released (a runtime that is shutting down drops a new task at once, and its end
    /// takes the lock), then records its handle, unless it has ended already.
    fn spawn_tracked(
        &self,
        mut state: MutexGuard<'_, State<E>>,
        code: &Arc<CodeContext>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        state.children.prune_finished();
        let key = state.children.reserve();
        self.live.fetch_add(1, Ordering::SeqCst);
        let tracked = Tracked {
            child: Some(task),
            done: Done {
                group: self.as_tracker(),
                key,
            },
        };
        let task = ENCLOSING.scope(self.as_enclosing(code), tracked);
        // Spawned under the lock, so registering and spawning are one step. (A runtime that is shutting down
        // drops a new task at once, on this thread: its end only tries the lock, so it cannot deadlock here.)
        let handle = tokio::spawn(task);
        state.children.fill(key, handle);
    }

    /// This group as the tracker of its children's ends.
    fn as_tracker(&self) -> Arc<dyn Track> {
        self.me.upgrade().expect("a group is alive while it spawns")
    }

    /// Records the first shutdown cause, then cancels every child and the body.
    pub(crate) fn shut_down(&self, cause: ShutdownCause) {
        self.lock().begin_shutdown(cause);
        self.stop();
    }

    pub(crate) fn record_body_error(&self, error: E) {
        let mut state = self.lock();
        state.body_error = Some(error);
        state.begin_shutdown(ShutdownCause::BodyFailed);
        drop(state);
        self.fail();
    }

    /// Makes this group isolate panics caught outside a child's own code: `sink` reports them, and they neither
    /// cancel the group nor resume on its owner. Set once, before the first child.
    pub(crate) fn isolate_panics(&self, sink: PanicSink) {
        let _first = self.panic_sink.set(sink);
    }

    pub(crate) fn record_panic(&self, payload: Box<dyn Any + Send>) {
        if let Some(sink) = self.panic_sink.get() {
            return sink(payload);
        }
        self.lock().panic.get_or_insert(payload);
        self.fail();
    }

    /// Cancels every child and the body because something failed. The failure that shuts the group down (if
    /// nothing had yet) first takes a tick of the shutdown clock: children woken before it still run the poll
    /// that was due (see [`run_child`]).
    fn fail(&self) {
        self.cancel_all(true);
    }

    /// Cancels every child and the body for anything but a failure (the deadline, a token, a shutdown, a drop):
    /// no child runs another poll, not even one it was due, nor does any below it when a failure above follows.
    pub(crate) fn stop(&self) {
        self.cancel_all(false);
    }

    fn cancel_all(&self, failure: bool) {
        if !self.token.is_cancelled() {
            // An outside token cancelled before, though not noticed yet, reached the group first: not a failure.
            let outside = self
                .outside
                .as_ref()
                .is_some_and(CancellationToken::is_cancelled);
            self.shut_down_at
                .fetch_min(shutdown_tick(failure && !outside), Ordering::SeqCst);
        }
        self.token.cancel();
    }

    /// Records how a child ended.
    pub(crate) fn record_child_exit(&self, name: Arc<str>, exit: Option<ChildExit<E>>) {
        let Some(exit) = exit else {
            return; // a success: nothing to record
        };
        let now = Instant::now();
        let mut state = self.lock();
        let mut cancel = false;
        match exit {
            ChildExit::Failed(error) => {
                state.failed.push(ChildFailure {
                    name: Arc::clone(&name),
                    error,
                    failed_at: now,
                });
                state.begin_shutdown(ShutdownCause::ChildFailed { name });
                cancel = true;
            }
            ChildExit::Panicked(payload) => {
                state.panic.get_or_insert(payload);
                cancel = true;
            }
            // Only cancellations the group caused are reported; one asked for through a handle is not news.
            ChildExit::Cancelled if self.token.is_cancelled() => {
                state.cancelled.push(CancelledChild {
                    name,
                    cancelled_at: now,
                });
            }
            ChildExit::Cancelled => {}
        }
        drop(state);
        if cancel {
            self.fail();
        }
    }

    /// Waits until no child is left (children may spawn children meanwhile), then closes the group so nothing
    /// more can be spawned or adopted.
    pub(crate) async fn join_all(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.running() == 0 {
                // Checked again under the lock that spawns count themselves in under, so no spawn slips between.
                let mut state = self.lock();
                if self.running() == 0 {
                    state.closed = true;
                    return;
                }
            }
            idle.await;
        }
    }

    /// Turns the recorded outcomes into the group's result, resuming a panic if there was one.
    ///
    /// `value` is the body's value (or `()` for a group without a body); `stopped` says the shutdown was asked
    /// for and is not itself an error.
    pub(crate) fn finish<T>(&self, value: Option<T>, stopped: bool) -> Result<T, GroupError<E>> {
        let mut state = self.lock();
        let panic = state.panic.take();
        let shutdown = state.shutdown.take();
        let error = match shutdown {
            Some((cause, shut_down_at)) => Some(GroupError {
                cause,
                shut_down_at,
                body_error: state.body_error.take(),
                failed: mem::take(&mut state.failed),
                cancelled: mem::take(&mut state.cancelled),
            }),
            None => match (value, panic.is_some()) {
                (Some(value), false) if stopped || !self.token.is_cancelled() => {
                    return Ok(value);
                }
                // A panic alone: it resumes below.
                (_, true) => None,
                // Nothing inside the group failed, yet it was cancelled: the outside token fired.
                (_, false) => Some(GroupError {
                    cause: ShutdownCause::Cancelled,
                    shut_down_at: Instant::now(),
                    body_error: None,
                    failed: Vec::new(),
                    cancelled: mem::take(&mut state.cancelled),
                }),
            },
        };
        drop(state);
        let failed = panic.is_some()
            || error
                .as_ref()
                .is_some_and(|error| error.body_error.is_some() || !error.failed.is_empty());
        if failed && let Some(code) = &self.created_in {
            code.failed.store(true, Ordering::SeqCst);
        }
        if let Some(payload) = panic {
            match error {
                Some(error) if error.body_error.is_some() || !error.failed.is_empty() => {
                    std::panic::resume_unwind(Box::new(super::fail_fast::GroupPanic {
                        panic: payload,
                        error,
                    }))
                }
                _ => std::panic::resume_unwind(payload),
            }
        }
        Err(error.expect("a group that did not return a value has an error or a panic"))
    }
}

impl<E: Send + 'static> Adopt for Shared<E> {
    fn adopt(&self, orphans: Orphans) {
        let state = self.lock();
        if state.closed || tokio::runtime::Handle::try_current().is_err() {
            drop(state);
            return hand_up(self.parent.as_ref(), orphans);
        }
        // Taken even while the group shuts down: only a closed group has stopped joining.
        self.spawn_tracked(
            state,
            &CodeContext::of_group(self.token.clone()),
            Reaper(Some(orphans)),
        );
    }

    fn token(&self) -> &CancellationToken {
        &self.token
    }

    fn shut_down_at(&self) -> u64 {
        let own = self.shut_down_at.load(Ordering::SeqCst);
        self.created_in.as_ref().map_or(own, |code| {
            own.min(code.cancelled_alone_at.load(Ordering::SeqCst))
        })
    }

    fn parent(&self) -> Option<&Arc<dyn Adopt>> {
        self.parent.as_ref()
    }
}

/// What a child's task reports to its group as it ends.
trait Track: Send + Sync {
    /// The task with `key` has ended (its child, and everything the child owned, dropped).
    fn ended(&self, key: ChildKey);
    /// The task panicked outside its child's own `catch_unwind` (while being dropped, or an adopted panic).
    fn panicked(&self, payload: Box<dyn Any + Send>);
}

impl<E: Send + 'static> Track for Shared<E> {
    fn ended(&self, key: ChildKey) {
        // The handle goes now if the lock is free; otherwise the next spawn prunes it (it is finished).
        if let Ok(mut state) = self.state.try_lock() {
            state.children.remove(key);
        }
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn panicked(&self, payload: Box<dyn Any + Send>) {
        self.record_panic(payload);
    }
}

/// The running children's tasks, by key: a slab, so that adding and removing are O(1) and slots are reused. A
/// key carries its slot's generation, so a stale key (a task that ended before its handle was recorded, its slot
/// since reused) never touches another task's entry.
#[derive(Default)]
pub(crate) struct Children {
    slots: Vec<Slot>,
    free: Vec<usize>,
    len: usize,
    /// `len` after the last pruning: the next prune waits until it has doubled.
    pruned_at: usize,
}

#[derive(Default)]
struct Slot {
    handle: Option<JoinHandle<()>>,
    generation: u64,
    occupied: bool,
}

/// A child's entry in [`Children`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChildKey {
    index: usize,
    generation: u64,
}

impl Children {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries held, finished children not yet pruned included: what a long-lived group's memory grows with.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.len
    }

    /// A key for a task about to be spawned.
    fn reserve(&mut self) -> ChildKey {
        self.len += 1;
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::default());
            self.slots.len() - 1
        });
        let slot = &mut self.slots[index];
        slot.generation += 1;
        slot.occupied = true;
        ChildKey {
            index,
            generation: slot.generation,
        }
    }

    fn slot(&mut self, key: ChildKey) -> Option<&mut Slot> {
        self.slots
            .get_mut(key.index)
            .filter(|slot| slot.occupied && slot.generation == key.generation)
    }

    /// Records the handle of the task spawned for `key`, unless that task has ended already (or this is a fresh
    /// set: the group was dropped meanwhile).
    fn fill(&mut self, key: ChildKey, handle: JoinHandle<()>) {
        if let Some(slot) = self.slot(key) {
            slot.handle = Some(handle);
        }
    }

    /// Forgets the handles of tasks that have ended, once they are as many as the others: amortised O(1).
    fn prune_finished(&mut self) {
        if self.len < 64 || self.len < 2 * self.pruned_at {
            return;
        }
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            if slot.occupied && slot.handle.as_ref().is_some_and(JoinHandle::is_finished) {
                slot.occupied = false;
                slot.handle = None;
                self.free.push(index);
                self.len -= 1;
            }
        }
        self.pruned_at = self.len.max(32);
    }

    /// Forgets the task with `key` (a no-op for a key this set no longer holds).
    fn remove(&mut self, key: ChildKey) {
        if let Some(slot) = self.slot(key) {
            slot.occupied = false;
            slot.handle = None;
            self.free.push(key.index);
            self.len -= 1;
        }
    }

    /// Aborts every task and returns their handles, to wait for them.
    fn abort_all(self) -> Vec<JoinHandle<()>> {
        self.slots
            .into_iter()
            .filter_map(|slot| slot.handle)
            .inspect(JoinHandle::abort)
            .collect()
    }
}

pin_project_lite::pin_project! {
    /// A child's task: the child, then (dropped last) the report that it ended. Panics are caught around polling
    /// it and around dropping it, and reported to the group.
    struct Tracked<F> {
        #[pin]
        child: Option<F>,
        done: Done,
    }

    impl<F> PinnedDrop for Tracked<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            drop_child(this.child, this.done);
        }
    }
}

/// Reports the end of a child's task when dropped: after the child, since it is the last field.
struct Done {
    group: Arc<dyn Track>,
    key: ChildKey,
}

impl<F: Future<Output = ()>> Future for Tracked<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let Some(child) = this.child.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        match catch_unwind(AssertUnwindSafe(|| child.poll(context))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                drop_child(this.child, this.done);
                Poll::Ready(())
            }
            Err(payload) => {
                this.done.group.panicked(payload);
                drop_child(this.child, this.done);
                Poll::Ready(())
            }
        }
    }
}

/// Drops a child's future in place, now, reporting a panic from its destructors.
fn drop_child<F>(mut child: Pin<&mut Option<F>>, done: &Done) {
    if child.is_some()
        && let Err(payload) = catch_unwind(AssertUnwindSafe(|| child.set(None)))
    {
        done.group.panicked(payload);
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        self.group.ended(self.key);
    }
}

impl<E> State<E> {
    pub(crate) fn begin_shutdown(&mut self, cause: ShutdownCause) {
        if self.shutdown.is_none() {
            self.shutdown = Some((cause, Instant::now()));
        }
    }

    pub(crate) fn refuses_spawn(&self) -> bool {
        self.closed || self.shutdown.is_some() || self.panic.is_some()
    }
}

impl Orphans {
    /// The aborted tasks of `group`, a dropped group: ends when all of them have, with the first panic recorded
    /// in the group (a destructor that panicked while they were dropped, say), which nobody else will report.
    fn of_tasks<E: Send + 'static>(group: Arc<Shared<E>>, tasks: Vec<JoinHandle<()>>) -> Self {
        Self(Box::pin(async move {
            for task in tasks {
                let _ = task.await;
            }
            group.lock().panic.take()
        }))
    }

    /// A blocking thread whose child was dropped: ends when the thread returns.
    fn of_thread<T: Send + 'static>(thread: JoinHandle<T>) -> Self {
        Self(Box::pin(async move {
            match thread.await {
                Err(error) if error.is_panic() => Some(error.into_panic()),
                _ => None,
            }
        }))
    }
}

/// Hands `orphans` to the group above, or lets them go when there is none (the top of the tree was dropped).
fn hand_up(parent: Option<&Arc<dyn Adopt>>, orphans: Orphans) {
    if let Some(parent) = parent {
        parent.adopt(orphans);
    }
}

/// A task that joins orphans for the group it runs in; the group's own join waits for it. If it is itself
/// dropped first (its group was dropped), it hands what is left to the group above.
struct Reaper(Option<Orphans>);

impl Future for Reaper {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let Some(orphans) = self.0.as_mut() else {
            return Poll::Ready(());
        };
        let panic = std::task::ready!(orphans.0.as_mut().poll(context));
        self.0 = None;
        if let Some(payload) = panic {
            // Resumed inside this task: the group's join finds it as a panicked task and resumes it in turn.
            std::panic::resume_unwind(payload);
        }
        Poll::Ready(())
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(orphans) = self.0.take() {
            // This runs inside the reaper's own task, whose enclosing group is the one being dropped: it is
            // closed, so `adopt` passes the orphans further up.
            let _ = ENCLOSING.try_with(|enclosing| enclosing.group.adopt(orphans));
        }
    }
}

/// One child task: runs the child until it ends or its token is cancelled, then reports how it ended.
///
/// The token is checked first, before every poll of the child and before the first one: once the group shuts
/// down (or the child's handle is cancelled) the child's code does not run again, and a child that had not
/// started never starts. One exception, asyncio's: when a failure (a child's or the body's) shut the group, or a
/// group above it, down, a started child that had already been woken at that moment, by what it awaited (a
/// timer due at the same instant, a message), runs that one poll, the step it was due, and what it returns
/// counts. asyncio cancels a failed task's siblings from a callback that runs after the steps already scheduled
/// in that turn of the event loop. The child's waker ([`WakeRecorded`]) notes each wake-up on the
/// [`SHUTDOWN_CLOCK`]; a child woken by the failure itself (its token, a failed sibling's handle) or after it is
/// not due, nor is one that a stop (a deadline, a token, a shutdown, a supervisor's included) reached first,
/// whatever fails above it afterwards.
pub(crate) async fn run_child<T, E, Child>(
    shared: Arc<Shared<E>>,
    name: Arc<str>,
    slot: Option<OwnedSemaphorePermit>,
    sender: oneshot::Sender<T>,
    code: Arc<CodeContext>,
    child: Child,
) where
    Child: Future<Output = Result<T, E>>,
    E: Send + 'static,
{
    // Held until the child ends, so the next waiting spawn starts only then.
    let _slot = slot;
    let exit = if shared.check_cancelled(&shared.token) || code.is_cancelled_alone() {
        Some(ChildExit::Cancelled)
    } else {
        let child = WakeRecorded::new(AssertUnwindSafe(child).catch_unwind(), &code);
        tokio::pin!(child);
        let ended = tokio::select! {
            biased;
            () = shared.cancelled(&shared.token) => None,
            () = code.cancelled_alone() => None,
            result = &mut child => Some(result),
        };
        // Cancelled with inner groups still running: let them wind down and report (see the module docs). The
        // error a drained child returns counts only when an inner group failed: it then carries that failure;
        // otherwise it is the inner groups' cancellation, passed on. The same holds for the poll a child was
        // due when a failure shut the group down, if inner groups were running then.
        let (ended, error_counts) = match ended {
            Some(result) => (Some(result), true),
            None => {
                let own_error = code.running_groups() == 0;
                let due = if code.was_due(&*shared) {
                    poll_once(child.as_mut()).await
                } else {
                    None
                };
                match due {
                    Some(result) => (Some(result), own_error || code.failed()),
                    None => (drain(child.as_mut(), &code).await, code.failed()),
                }
            }
        };
        match ended {
            Some(Ok(Ok(value))) => {
                // The body may have dropped the handle: the value is then simply not wanted.
                let _unwanted = sender.send(value);
                None
            }
            Some(Ok(Err(error))) if error_counts => Some(ChildExit::Failed(error)),
            Some(Err(payload)) => Some(ChildExit::Panicked(payload)),
            Some(Ok(Err(_))) | None => Some(ChildExit::Cancelled),
        }
    };
    // Recorded (and the group cancelled) before `sender` drops, so a sibling or the body awaiting this child's
    // handle is cancelled rather than woken with `ChildLost`.
    shared.record_child_exit(name, exit);
}

/// Polls `future` once: its output if that poll finished it.
async fn poll_once<F: Future>(mut future: Pin<&mut F>) -> Option<F::Output> {
    std::future::poll_fn(|context| match future.as_mut().poll(context) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

pin_project_lite::pin_project! {
    /// A child's future, polled with a waker of its own (its [`CodeContext`]) that notes when the child is woken
    /// before it wakes the task: how [`run_child`] tells a child that was already due when its group failed. The
    /// waker is made once per child (it is the context's `Arc`), so a poll allocates nothing.
    struct WakeRecorded<F> {
        #[pin]
        future: F,
        code: Arc<CodeContext>,
        waker: Waker,
    }

    impl<F> PinnedDrop for WakeRecorded<F> {
        fn drop(this: Pin<&mut Self>) {
            // The child's handle may keep the context long after the task ended: it must not keep the task too.
            drop(this.code.task.take());
        }
    }
}

impl<F> WakeRecorded<F> {
    fn new(future: F, code: &Arc<CodeContext>) -> Self {
        Self {
            future,
            code: Arc::clone(code),
            waker: Waker::from(Arc::clone(code)),
        }
    }
}

impl<F: Future> Future for WakeRecorded<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        this.code.task.register(context.waker());
        // This poll is the step any earlier wake-up asked for.
        this.code.woken_at.store(NEVER, Ordering::SeqCst);
        this.future.poll(&mut Context::from_waker(this.waker))
    }
}

/// A child's waker: notes the wake-up, then wakes the task.
impl Wake for CodeContext {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // The first wake-up since the last poll is the one that counts: woken before a failure, then again by
        // it, the child was still due.
        self.woken_at
            .fetch_min(SHUTDOWN_CLOCK.load(Ordering::SeqCst), Ordering::SeqCst);
        self.task.wake();
    }
}

/// One blocking child: runs `work` on tokio's blocking threads and waits for it, cancelled or not (a thread
/// cannot be interrupted; `work` watches its token), then reports how it ended. If the wait itself is dropped
/// (its group was dropped), the thread is handed to the enclosing group to wait for.
pub(crate) async fn run_blocking_child<T, E, Work>(
    shared: Arc<Shared<E>>,
    name: Arc<str>,
    slot: Option<OwnedSemaphorePermit>,
    sender: oneshot::Sender<T>,
    code: Arc<CodeContext>,
    work: Work,
) where
    Work: FnOnce(CancellationToken) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let _slot = slot;
    let token = code.token(&shared.token).clone();
    // The child's span crosses into the thread: what `work` records is inside it.
    let span = tracing::Span::current();
    let thread = ThreadWait(Some(tokio::task::spawn_blocking(move || {
        span.in_scope(|| work(token))
    })));
    let exit = match thread.await {
        Ok(Ok(value)) => {
            let _unwanted = sender.send(value);
            None
        }
        Ok(Err(error)) => Some(ChildExit::Failed(error)),
        Err(join_error) if join_error.is_panic() => {
            Some(ChildExit::Panicked(join_error.into_panic()))
        }
        // The runtime is shutting down and dropped the work before it started.
        Err(_cancelled) => Some(ChildExit::Cancelled),
    };
    shared.record_child_exit(name, exit);
}

/// Waits for a blocking thread; dropped before it returns, hands the thread to the enclosing group.
struct ThreadWait<T: Send + 'static>(Option<JoinHandle<T>>);

impl<T: Send + 'static> Future for ThreadWait<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(thread) = self.0.as_mut() else {
            return Poll::Pending;
        };
        let joined = std::task::ready!(Pin::new(thread).poll(context));
        self.0 = None;
        Poll::Ready(joined)
    }
}

impl<T: Send + 'static> Drop for ThreadWait<T> {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take()
            && !thread.is_finished()
        {
            let _ = ENCLOSING.try_with(|enclosing| {
                enclosing.group.adopt(Orphans::of_thread(thread));
            });
        }
    }
}

impl CodeContext {
    /// The context of a child, which may be cancelled alone.
    pub(crate) fn child() -> Arc<Self> {
        Arc::new(Self {
            own: OnceLock::new(),
            cancelled_alone: AtomicBool::new(false),
            cancelled_alone_at: AtomicU64::new(NEVER),
            alone: AtomicWaker::new(),
            running_groups: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            task: AtomicWaker::new(),
            woken_at: AtomicU64::new(NEVER),
        })
    }

    /// The context of code cancelled only with its group (a body, settle tasks): `token` is the group's.
    pub(crate) fn of_group(token: CancellationToken) -> Arc<Self> {
        let code = Self::child();
        let _fresh = code.own.set(token);
        code
    }

    /// This code's own token, made now (as a child token of `group_token`, the token of the group the code
    /// belongs to) if it was not yet.
    pub(crate) fn token(&self, group_token: &CancellationToken) -> &CancellationToken {
        let own = self.own.get_or_init(|| group_token.child_token());
        // Paired with the fence in `cancel_alone`: one of the two sees the other, so a token made while the
        // code is cancelled alone is cancelled too.
        fence(Ordering::SeqCst);
        if self.cancelled_alone.load(Ordering::SeqCst) {
            own.cancel();
        }
        own
    }

    /// Cancels this code alone (and the groups created in it), not its group.
    pub(crate) fn cancel_alone(&self) {
        self.cancelled_alone_at
            .fetch_min(shutdown_tick(false), Ordering::SeqCst);
        self.cancelled_alone.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if let Some(own) = self.own.get() {
            own.cancel();
        }
        self.alone.wake();
    }

    pub(crate) fn is_cancelled_alone(&self) -> bool {
        self.cancelled_alone.load(Ordering::SeqCst)
    }

    /// Resolves once this code is cancelled alone.
    pub(crate) async fn cancelled_alone(&self) {
        std::future::poll_fn(|context| {
            if self.is_cancelled_alone() {
                return Poll::Ready(());
            }
            self.alone.register(context.waker());
            if self.is_cancelled_alone() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Whether this child, just cancelled by `group`'s token, was due a poll: the first shutdown to reach it
    /// (the earliest of `group`'s, of every group above it, and of the codes they were created in cancelled
    /// alone) was a failure, and the child was woken (since its last poll) before it. Never for a child
    /// cancelled alone, nor for one never polled (nothing can wake it).
    fn was_due(&self, group: &dyn Adopt) -> bool {
        if self.is_cancelled_alone() {
            return false;
        }
        let woken_at = self.woken_at.load(Ordering::SeqCst);
        let mut first = NEVER;
        let mut next = Some(group);
        while let Some(group) = next {
            first = first.min(group.shut_down_at());
            next = group.parent().map(|parent| &**parent);
        }
        first != NEVER && first & 1 == 1 && woken_at < first >> 1
    }

    fn running_groups(&self) -> usize {
        self.running_groups.load(Ordering::SeqCst)
    }

    /// Whether a group created in this code ended with an error or a panic.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

impl InnerGroup {
    /// Counts a group that winds down by itself (a scope, a settle) in the code running now, until dropped.
    pub(crate) fn enter() -> Self {
        let code = ENCLOSING
            .try_with(|enclosing| Arc::clone(&enclosing.code))
            .ok();
        if let Some(code) = &code {
            code.running_groups.fetch_add(1, Ordering::SeqCst);
        }
        Self(code)
    }
}

impl Drop for InnerGroup {
    fn drop(&mut self) {
        if let Some(code) = &self.0 {
            code.running_groups.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Polls a cancelled child's (or body's) future while groups created in it are still winding down, so that
/// they join their children and return their errors; stops as soon as none is running. `None` when it stopped
/// before the future ended.
pub(crate) async fn drain<F: Future>(
    mut future: Pin<&mut F>,
    code: &CodeContext,
) -> Option<F::Output> {
    std::future::poll_fn(|context| {
        if code.running_groups() == 0 {
            return Poll::Ready(None);
        }
        match future.as_mut().poll(context) {
            Poll::Ready(output) => Poll::Ready(Some(output)),
            Poll::Pending if code.running_groups() == 0 => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Sleeps until the deadline, or forever if there is none.
pub(crate) async fn sleep_until(deadline: Deadline) {
    match deadline.instant() {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
