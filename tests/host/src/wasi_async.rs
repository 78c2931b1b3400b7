//! Feeding a component-model `stream<T>` from a tokio channel: how the async Spin
//! interfaces hand rows (PostgreSQL) and keys (key-value) to a WASIp3 guest while a
//! host task still produces them, one item per read, as Spin's own producer does.

use std::pin::Pin;
use std::task::{Context, Poll};
use wasmtime::component::{Destination, StreamProducer, StreamResult};
use wasmtime::StoreContextMut;

pub struct ChannelProducer<T> {
    rx: tokio::sync::mpsc::Receiver<T>,
}

impl<T> ChannelProducer<T> {
    pub fn new(rx: tokio::sync::mpsc::Receiver<T>) -> Self {
        Self { rx }
    }
}

impl<D, T: Send + Sync + 'static> StreamProducer<D> for ChannelProducer<T> {
    type Item = T;
    type Buffer = Option<T>;

    fn poll_produce<'a>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        store: StoreContextMut<'a, D>,
        mut destination: Destination<'a, Self::Item, Self::Buffer>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        if destination.remaining(store) == Some(0) {
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        match self.get_mut().rx.poll_recv(cx) {
            Poll::Ready(None) => Poll::Ready(Ok(StreamResult::Dropped)),
            Poll::Ready(Some(item)) => {
                destination.set_buffer(Some(item));
                Poll::Ready(Ok(StreamResult::Completed))
            }
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}
