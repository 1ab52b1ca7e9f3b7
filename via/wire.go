package via

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/wsasync/wsasync"
)

// Subprotocol is the WebSocket subprotocol of the wire protocol described in
// PROTOCOL.md. A client offers it; an endpoint selects it.
const Subprotocol = "via.v1"

// Version is the value of every envelope's "v" field.
const Version = 1

// Envelope types (PROTOCOL.md §3).
const (
	typeEvent = "event"
	typeReply = "reply"
	typeSub   = "sub"
	typeUnsub = "unsub"
	typeValue = "value"
	typePatch = "patch"
)

// sessionID is the reserved event that carries a session context to the
// other side (PROTOCOL.md §5). Ids under "via/" are reserved.
const (
	reservedPrefix = "via/"
	sessionID      = "via/session"
)

// Bounds on envelope fields, so that a peer cannot make us keep big keys.
const (
	maxIDLen  = 256
	maxRIDLen = 128
	maxKeyLen = 128
)

// envelope is one message on the wire.
type envelope struct {
	V       int               `json:"v"`
	Type    string            `json:"type"`
	ID      string            `json:"id,omitempty"`
	RID     string            `json:"rid,omitempty"`
	Status  int               `json:"status,omitempty"`
	Key     string            `json:"key,omitempty"`
	SN      uint64            `json:"sn,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    json.RawMessage   `json:"body,omitempty"`
}

var null = json.RawMessage("null")

// errBadEnvelope wraps every reason a message is refused.
var errBadEnvelope = errors.New("via: bad message")

func badEnvelope(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadEnvelope, fmt.Sprintf(format, args...))
}

// decode parses and checks one received message. On error the envelope holds
// what could be read of it, so that a request id can still be answered.
func decode(m wsasync.Message) (envelope, error) {
	var env envelope
	if m.Type != wsasync.TextMessage {
		return env, badEnvelope("%v message, want text", m.Type)
	}
	if err := json.Unmarshal(m.Data, &env); err != nil {
		// A type error leaves the fields that did decode in env.
		if len(env.RID) > maxRIDLen {
			env.RID = ""
		}
		return env, fmt.Errorf("%w: %v", errBadEnvelope, err)
	}
	if len(env.RID) > maxRIDLen {
		env.RID = ""
		return env, badEnvelope("rid longer than %d bytes", maxRIDLen)
	}
	if env.V != Version {
		return env, badEnvelope("version %d, want %d", env.V, Version)
	}
	if len(env.Body) == 0 {
		env.Body = null
	}
	switch env.Type {
	case typeEvent:
		if env.ID == "" || len(env.ID) > maxIDLen {
			return env, badEnvelope("event id must have 1 to %d bytes", maxIDLen)
		}
	case typeReply:
		if env.RID == "" {
			return env, badEnvelope("reply without rid")
		}
		if env.Status < 100 || env.Status > 599 {
			return env, badEnvelope("reply status %d", env.Status)
		}
	case typeSub:
		if env.RID == "" || env.Key == "" || env.ID == "" {
			return env, badEnvelope("sub needs rid, key and id")
		}
		if len(env.ID) > maxIDLen || len(env.Key) > maxKeyLen {
			return env, badEnvelope("sub id or key too long")
		}
	case typeUnsub:
		if env.Key == "" || len(env.Key) > maxKeyLen {
			return env, badEnvelope("unsub needs a key of 1 to %d bytes", maxKeyLen)
		}
	case typeValue, typePatch:
		if env.Key == "" || env.SN == 0 {
			return env, badEnvelope("%s needs key and sn", env.Type)
		}
	case "":
		return env, badEnvelope("no type")
	default:
		return env, badEnvelope("unknown type %q", env.Type)
	}
	return env, nil
}

// marshalBody encodes an application value.
func marshalBody(body any) (json.RawMessage, error) {
	switch b := body.(type) {
	case nil:
		return null, nil
	case json.RawMessage:
		if len(b) == 0 {
			return null, nil
		}
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("via: encoding body: %w", err)
	}
	return data, nil
}

func encodeEvent(id string, body any, headers map[string]string, rid string) ([]byte, error) {
	b, err := marshalBody(body)
	if err != nil {
		return nil, err
	}
	return json.Marshal(envelope{V: Version, Type: typeEvent, ID: id, RID: rid, Headers: headers, Body: b})
}

func encodeReply(rid string, status int, body any) ([]byte, error) {
	b, err := marshalBody(body)
	if err != nil {
		return nil, err
	}
	return json.Marshal(envelope{V: Version, Type: typeReply, RID: rid, Status: status, Body: b})
}

func encodeSub(rid, key, id string, args json.RawMessage) ([]byte, error) {
	return json.Marshal(envelope{V: Version, Type: typeSub, RID: rid, Key: key, ID: id, Body: args})
}

func encodeUnsub(key string) ([]byte, error) {
	return json.Marshal(envelope{V: Version, Type: typeUnsub, Key: key})
}

// encodePush makes a value or patch message; body is JSON already.
func encodePush(typ, key string, sn uint64, body json.RawMessage) ([]byte, error) {
	return json.Marshal(envelope{V: Version, Type: typ, Key: key, SN: sn, Body: body})
}

// errorBody is the body of the replies the endpoint itself makes.
type errorBody struct {
	Error  string `json:"error"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Bodies of the error replies the endpoint makes (PROTOCOL.md §4).
const (
	errUnknownEvent   = "unknown event"
	errUnknownSub     = "unknown subscription"
	errBadMessage     = "bad message"
	errBadRequest     = "bad request"
	errInternal       = "internal error"
	errSessionRefused = "session refused"
)

func formatRID(n uint64) string { return strconv.FormatUint(n, 36) }
