package chatapp

import (
	"context"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wsasync/wsasync/sente"
)

// The events of the chat, both ways:
//
//	client → server                    server → client
//	"chat/say"      {text}         →   "chat/msg"     {from, text, at} to everyone
//	"chat/private"  {to, text}     →   "chat/private" {from, to, text, at} to both users
//	"chat/users?"                  →   reply: ["alice", "bob"]
//	                                   "chat/users"   ["alice", "bob"] when that changes
//
// Requests are answered {"ok": true} or {"error": "why"}.

// message is a room or private message as pushed to clients.
type message struct {
	From string `json:"from"`
	To   string `json:"to,omitempty"`
	Text string `json:"text"`
	At   int64  `json:"at"` // Unix milliseconds
}

type result struct {
	OK    bool   `json:"ok,omitempty"`
	Error string `json:"error,omitempty"`
}

var ok = result{OK: true}

// reply answers ev if its client asked for an answer (a client that sent
// the event with send rather than request did not).
func reply(ev *sente.Event, v any) {
	_ = ev.Reply(v) // ErrNoReply, or the client is gone: nothing to do
}

// say sends a message to the room: every connection of every user.
func (a *App) say(ctx context.Context, ev *sente.Event) {
	var in struct {
		Text string `json:"text"`
	}
	if err := ev.Decode(&in); err != nil || !validText(in.Text) {
		reply(ev, result{Error: "a message is 1 to 500 characters"})
		return
	}
	m := message{From: ev.UserID, Text: strings.TrimSpace(in.Text), At: time.Now().UnixMilli()}
	if err := a.chsk.Broadcast("chat/msg", m); err != nil {
		reply(ev, result{Error: err.Error()})
		return
	}
	reply(ev, ok)
}

// private sends a message to every tab of one user, and to the sender's own
// tabs so that they all show the conversation.
func (a *App) private(ctx context.Context, ev *sente.Event) {
	var in struct {
		To   string `json:"to"`
		Text string `json:"text"`
	}
	if err := ev.Decode(&in); err != nil || !validText(in.Text) {
		reply(ev, result{Error: "a message is 1 to 500 characters"})
		return
	}
	if users, err := a.chsk.ConnectedUsers(ctx); err != nil || !slices.Contains(users, in.To) {
		reply(ev, result{Error: in.To + " is not online"})
		return
	}
	m := message{From: ev.UserID, To: in.To, Text: strings.TrimSpace(in.Text), At: time.Now().UnixMilli()}
	if err := a.chsk.Push(in.To, "chat/private", m); err != nil {
		reply(ev, result{Error: err.Error()})
		return
	}
	if in.To != ev.UserID {
		a.chsk.Push(ev.UserID, "chat/private", m)
	}
	reply(ev, ok)
}

// users answers with the users online.
func (a *App) users(ctx context.Context, ev *sente.Event) {
	reply(ev, a.online(ctx))
}

// presence tells everyone the new list when a user's first connection opens
// or their last one closes (sente waits a grace period first, so a reload
// is not a departure).
func (a *App) presence(ctx context.Context, ev *sente.Event) {
	a.chsk.Broadcast("chat/users", a.online(ctx))
}

func (a *App) online(ctx context.Context) []string {
	users, err := a.chsk.ConnectedUsers(ctx)
	if err != nil {
		a.log.Error("chat: listing users", "err", err)
	}
	// Anonymous connections ("") cannot pass the CSRF check; leave them out
	// anyway. An empty list is [] rather than null.
	users = slices.DeleteFunc(append([]string{}, users...), func(u string) bool { return u == "" })
	slices.Sort(users)
	return users
}

func validText(s string) bool {
	s = strings.TrimSpace(s)
	return s != "" && utf8.RuneCountInString(s) <= 500
}
