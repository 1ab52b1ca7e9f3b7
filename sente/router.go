package sente

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
)

// HandlerFunc handles one event.
type HandlerFunc func(ctx context.Context, ev *Event)

// Router runs handlers by event id. Its zero value has no handlers; events
// with no handler go to Default, or are answered with nothing and dropped.
type Router struct {
	// Default handles events no handler was registered for. Nil drops
	// them (a client waiting for a reply then gets its timeout).
	Default HandlerFunc
	// Workers is how many events are handled at once. Zero means one: in
	// order, as Sente does. With more, events of one connection may be
	// handled out of order.
	Workers int
	// Logger receives recovered panics. Nil means slog.Default().
	Logger *slog.Logger

	handlers map[string]HandlerFunc
}

// Handle registers h for events with id.
func (r *Router) Handle(id string, h HandlerFunc) {
	if r.handlers == nil {
		r.handlers = make(map[string]HandlerFunc)
	}
	r.handlers[id] = h
}

// Run handles events until ctx ends or events is closed, and returns once
// every handler it started has returned. A handler that panics is logged and
// the router goes on.
func (r *Router) Run(ctx context.Context, events <-chan *Event) {
	workers := max(r.Workers, 1)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case ev, ok := <-events:
					if !ok {
						return
					}
					r.dispatch(ctx, ev)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	wg.Wait()
}

func (r *Router) dispatch(ctx context.Context, ev *Event) {
	h := r.handlers[ev.ID]
	if h == nil {
		h = r.Default
	}
	if h == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			log := r.Logger
			if log == nil {
				log = slog.Default()
			}
			log.Error("sente: handler panicked", "event", ev.ID, "uid", ev.UserID, "client", ev.ClientID,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if ev.WantsReply() {
				_ = ev.Reply(map[string]string{"error": "internal error"})
			}
		}
	}()
	h(ctx, ev)
}
