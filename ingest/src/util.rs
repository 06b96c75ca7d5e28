//! Small helpers shared by the server and the client side.

use futures::Stream;
use tokio::sync::mpsc;

/// A tokio channel receiver as a `Stream` (tonic wants streams for request/response bodies).
pub(crate) fn receiver_stream<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
