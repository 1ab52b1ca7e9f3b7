package wsasync

import (
	"encoding/binary"
	"errors"
	"strconv"
	"unicode/utf8"
)

// StatusCode is a close code as RFC 6455 section 7.4 defines it.
type StatusCode uint16

// Close codes. 1005, 1006 and 1015 are only ever reported, never sent.
const (
	StatusNormalClosure           StatusCode = 1000
	StatusGoingAway               StatusCode = 1001
	StatusProtocolError           StatusCode = 1002
	StatusUnsupportedData         StatusCode = 1003
	StatusNoStatusReceived        StatusCode = 1005
	StatusAbnormalClosure         StatusCode = 1006
	StatusInvalidFramePayloadData StatusCode = 1007
	StatusPolicyViolation         StatusCode = 1008
	StatusMessageTooBig           StatusCode = 1009
	StatusMandatoryExtension      StatusCode = 1010
	StatusInternalError           StatusCode = 1011
	StatusServiceRestart          StatusCode = 1012
	StatusTryAgainLater           StatusCode = 1013
	StatusBadGateway              StatusCode = 1014
	StatusTLSHandshake            StatusCode = 1015
)

// String returns the code's number and, for the registered codes, its name.
func (c StatusCode) String() string {
	name := ""
	switch c {
	case StatusNormalClosure:
		name = "normal closure"
	case StatusGoingAway:
		name = "going away"
	case StatusProtocolError:
		name = "protocol error"
	case StatusUnsupportedData:
		name = "unsupported data"
	case StatusNoStatusReceived:
		name = "no status received"
	case StatusAbnormalClosure:
		name = "abnormal closure"
	case StatusInvalidFramePayloadData:
		name = "invalid frame payload data"
	case StatusPolicyViolation:
		name = "policy violation"
	case StatusMessageTooBig:
		name = "message too big"
	case StatusMandatoryExtension:
		name = "mandatory extension"
	case StatusInternalError:
		name = "internal error"
	case StatusServiceRestart:
		name = "service restart"
	case StatusTryAgainLater:
		name = "try again later"
	case StatusBadGateway:
		name = "bad gateway"
	case StatusTLSHandshake:
		name = "TLS handshake"
	}
	if name == "" {
		return strconv.Itoa(int(c))
	}
	return strconv.Itoa(int(c)) + " (" + name + ")"
}

// Sendable reports whether c may appear in a close frame: the registered codes
// other than 1004-1006 and 1015, and the 3000-4999 ranges for libraries and
// applications.
func (c StatusCode) Sendable() bool {
	switch {
	case c >= 1000 && c <= 1003, c >= 1007 && c <= 1014:
		return true
	case c >= 3000 && c <= 4999:
		return true
	}
	return false
}

// maxCloseReason is the longest reason that fits in a control frame after the
// two bytes of the code.
const maxCloseReason = 123

// Closed returns a message that, sent on out, closes the connection with code
// and reason once everything queued before it is written. A reason longer
// than 123 bytes is cut at a character boundary; invalid UTF-8 in it is
// replaced. StatusNoStatusReceived sends a close frame with no code. A code
// that may not be sent (see [StatusCode.Sendable]) closes with 1011 instead
// and is reported on errs.
func Closed(code StatusCode, reason string) Message {
	if code == StatusNoStatusReceived {
		return Message{Type: CloseMessage}
	}
	reason = closeReason(reason)
	b := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(b, uint16(code))
	copy(b[2:], reason)
	return Message{Type: CloseMessage, Data: b}
}

func closeReason(reason string) string {
	if !utf8.ValidString(reason) {
		reason = string([]rune(reason)) // invalid bytes become U+FFFD
	}
	if len(reason) <= maxCloseReason {
		return reason
	}
	n := maxCloseReason
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n]
}

// parseClose splits a close frame's payload. ok is false when the payload is
// malformed: one byte long, a code that may not be sent, or a reason that is
// not UTF-8 (code then says which close code answers it).
func parseClose(p []byte) (code StatusCode, reason string, ok bool) {
	switch {
	case len(p) == 0:
		return StatusNoStatusReceived, "", true
	case len(p) == 1:
		return StatusProtocolError, "", false
	}
	code = StatusCode(binary.BigEndian.Uint16(p))
	if !code.Sendable() {
		return StatusProtocolError, "", false
	}
	if !utf8.Valid(p[2:]) {
		return StatusInvalidFramePayloadData, "", false
	}
	return code, string(p[2:]), true
}

// CloseError is the one error errs carries when a connection ends. Code is
// the close code of the connection: the one received when Remote is true,
// the one this end sent otherwise, and StatusAbnormalClosure when no close
// frame could be exchanged. Err, when not nil, is the cause: a protocol
// violation, ErrReadLimit, ErrPingTimeout, ErrWriteTimeout, a handler panic
// or an I/O error; errors.Is sees through to it.
type CloseError struct {
	Code   StatusCode
	Reason string
	Remote bool
	Err    error
}

func (e *CloseError) Error() string {
	s := "wsasync: closed with " + e.Code.String()
	if e.Remote {
		s = "wsasync: peer closed with " + e.Code.String()
	}
	if e.Reason != "" {
		s += ": " + strconv.Quote(e.Reason)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *CloseError) Unwrap() error { return e.Err }

// CloseStatus returns the close code in err if err is or wraps a [*CloseError],
// and 0 otherwise.
func CloseStatus(err error) StatusCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// Causes of a connection's end, found with errors.Is on the error from errs.
var (
	// ErrProtocol: the peer broke RFC 6455 (closed with 1002).
	ErrProtocol = errors.New("wsasync: protocol violation")
	// ErrInvalidUTF8: a text message or a close reason was not UTF-8
	// (closed with 1007).
	ErrInvalidUTF8 = errors.New("wsasync: invalid UTF-8 in text")
	// ErrReadLimit: a message exceeded the read limit (closed with 1009).
	ErrReadLimit = errors.New("wsasync: message exceeds the read limit")
	// ErrPingTimeout: the peer sent nothing, not even a pong, for the ping
	// interval plus the pong timeout. The connection is dropped without a
	// close frame (1006).
	ErrPingTimeout = errors.New("wsasync: peer unresponsive: ping timeout")
	// ErrWriteTimeout: the peer read too slowly for a batch of writes to
	// finish within the write timeout. The connection is dropped without a
	// close frame (1006), since a frame may have been cut in the middle.
	ErrWriteTimeout = errors.New("wsasync: peer not reading: write timeout")
	// ErrHandlerPanic: the handler panicked (closed with 1011).
	ErrHandlerPanic = errors.New("wsasync: handler panicked")
	// ErrInvalidMessage: the handler sent a message of an unknown type or
	// a close code that may not be sent (closed with 1011).
	ErrInvalidMessage = errors.New("wsasync: invalid message on out")
)
