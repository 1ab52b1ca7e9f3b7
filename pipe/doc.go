// Package pipe is a small set of generic, context-aware channel helpers in
// the spirit of Clojure's core.async: fan-in ([Merge]), broadcast
// ([NewBroadcast]), pub/sub ([NewPubSub]), transforms ([Map], [Filter],
// [Split], [Take], [Into]), batching by count and time ([Batch]), buffers
// that block, slide or drop ([Buffer]), an ordered parallel stage
// ([Parallel]) and timeouts ([Timeout], [Tick], [Send], [Recv]).
//
// Every helper takes a [context.Context]. It runs until ctx ends or its input
// closes; then it closes its outputs and its goroutines return. A helper
// never closes a channel it did not make.
//
// Backpressure is explicit: a helper waits for a slow consumer unless its
// doc says otherwise, and so stops reading its input. To decouple a slow
// consumer, put a [Buffer] with a [Sliding] or [Dropping] policy in between
// and read its Dropped count.
//
// A connection's writer that sends a heartbeat every 20 s and coalesces
// outgoing messages for up to 30 ms (or 64 messages) per frame:
//
//	msgs := pipe.Merge(ctx, in, pipe.Tick(ctx, 20*time.Second, "ping"))
//	frames := pipe.Batch(ctx, msgs, pipe.BatchOptions{Size: 64, Window: 30 * time.Millisecond})
//	for batch := range frames {
//		if err := pipe.Send(ctx, out, strings.Join(batch, "\n")); err != nil {
//			return err
//		}
//	}
package pipe
