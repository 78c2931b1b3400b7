//! The work queue on Spin's Redis: the store the queue's scripts run on, the enqueue a
//! request makes on its open connection, and the drain with each kind's task handler.
//! The rules are in `evolve_core::queue`; this module moves arguments and replies, and
//! runs the tasks.

mod analysis;
mod broadcast;
mod store;
mod voice;
mod work;

pub use analysis::{count_turn, AnalysisTask};
pub use broadcast::{BroadcastPage, PAGE_USERS, SEGMENTS};
pub use store::{enqueue, reference_state, RedisQueue, ReferenceState, SpinClock};
pub use voice::{voice_reference, VoiceTask};
pub use work::{drain_queue, WorkerContext};
