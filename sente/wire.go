package sente

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Raw is a value already packed by the connection's packer. As event data it
// is sent as it is; received event data is Raw until decoded.
type Raw []byte

// Reserved event ids.
const (
	EventHandshake      = "chsk/handshake"
	EventPing           = "chsk/ws-ping"
	EventPong           = "chsk/ws-pong"
	EventBadPackage     = "chsk/bad-package"
	EventBadEvent       = "chsk/bad-event"
	EventUserOpen       = "chsk/uidport-open"
	EventUserClose      = "chsk/uidport-close"
	EventClientConnect  = "chsk/client-connect"
	EventClientGone     = "chsk/client-disconnect"
	replyPong           = "pong"
	replyTimeout        = "chsk/timeout"
	maxEventID          = 128
	maxCallbackID       = 32
	reservedEventPrefix = "chsk/"
)

// ErrBadEventID reports an event id that is not "namespace/name".
var ErrBadEventID = errors.New("sente: event id must be \"namespace/name\"")

// ErrReservedEventID reports an application event whose id is under chsk/.
var ErrReservedEventID = errors.New("sente: event ids under chsk/ are reserved")

// ValidEventID reports whether id is "namespace/name" with both parts
// non-empty and at most 128 bytes in all.
func ValidEventID(id string) bool {
	if len(id) == 0 || len(id) > maxEventID {
		return false
	}
	i := strings.IndexByte(id, '/')
	return i > 0 && i < len(id)-1
}

// checkAppEventID refuses ids an application may not send.
func checkAppEventID(id string) error {
	if !ValidEventID(id) {
		return fmt.Errorf("%w: %q", ErrBadEventID, id)
	}
	if strings.HasPrefix(id, reservedEventPrefix) {
		return fmt.Errorf("%w: %q", ErrReservedEventID, id)
	}
	return nil
}

// wire packs and unpacks the protocol's shapes with one packer.
type wire struct {
	p    Packer
	null []byte
}

func newWire(p Packer) wire {
	if p == nil {
		p = JSON{}
	}
	null, err := p.Marshal(nil)
	if err != nil {
		panic(fmt.Sprintf("sente: packer %s cannot pack nil: %v", p.Name(), err))
	}
	return wire{p: p, null: null}
}

// value packs v, splicing a Raw as it is.
func (w wire) value(v any) ([]byte, error) {
	if r, ok := v.(Raw); ok {
		if r == nil {
			return w.null, nil
		}
		return r, nil
	}
	return w.p.Marshal(v)
}

// event packs [id, data], or [id] when data is nil.
func (w wire) event(id string, data any) ([]byte, error) {
	pid, err := w.p.Marshal(id)
	if err != nil {
		return nil, err
	}
	if data == nil {
		return w.p.AppendArray(nil, pid), nil
	}
	pd, err := w.value(data)
	if err != nil {
		return nil, fmt.Errorf("sente: packing data of %s: %w", id, err)
	}
	return w.p.AppendArray(nil, pid, pd), nil
}

// frame packs the envelope [payload, cb].
func (w wire) frame(payload []byte, cb string) []byte {
	pcb := w.null
	if cb != "" {
		pcb, _ = w.p.Marshal(cb)
	}
	return w.p.AppendArray(nil, payload, pcb)
}

// batch packs a batch of packed events as one frame, [[event, …], null] or,
// when the batch holds logged pushes, [[event, …], null, pos] with the
// position of the last.
func (w wire) batch(events [][]byte, last Position) []byte {
	payload := w.p.AppendArray(nil, events...)
	if last.IsZero() {
		return w.frame(payload, "")
	}
	pos, _ := w.p.Marshal(last.String())
	return w.p.AppendArray(nil, payload, w.null, pos)
}

// errBadPackage and errBadEvent classify what a received frame got wrong.
var (
	errBadPackage = errors.New("sente: bad package")
	errBadEvent   = errors.New("sente: bad event")
)

// unframe splits a received frame into its payload and callback id.
func (w wire) unframe(frame []byte) (payload []byte, cb string, err error) {
	parts, err := w.p.SplitArray(frame)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", errBadPackage, err)
	}
	if len(parts) != 2 {
		return nil, "", fmt.Errorf("%w: envelope of %d elements, want [payload, cb]", errBadPackage, len(parts))
	}
	if !w.isNull(parts[1]) {
		if err := w.p.Unmarshal(parts[1], &cb); err != nil || cb == "" || len(cb) > maxCallbackID {
			return nil, "", fmt.Errorf("%w: callback id must be a string of 1 to %d characters", errBadPackage, maxCallbackID)
		}
	}
	return parts[0], cb, nil
}

// unevent splits a packed event into its id and data (nil when absent).
func (w wire) unevent(payload []byte) (id string, data Raw, err error) {
	parts, err := w.p.SplitArray(payload)
	if err != nil || len(parts) < 1 || len(parts) > 2 {
		return "", nil, fmt.Errorf("%w: want [id] or [id, data]", errBadEvent)
	}
	if err := w.p.Unmarshal(parts[0], &id); err != nil || !ValidEventID(id) {
		return "", nil, fmt.Errorf("%w: id must be a \"namespace/name\" string", errBadEvent)
	}
	if len(parts) == 2 && !w.isNull(parts[1]) {
		data = parts[1]
	}
	return id, data, nil
}

func (w wire) isNull(b []byte) bool {
	if !w.p.Binary() {
		b = bytes.TrimSpace(b)
	}
	return bytes.Equal(b, w.null)
}
