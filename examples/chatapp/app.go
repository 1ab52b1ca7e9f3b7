// Package chatapp is the chat demo of wsasync/sente: sign in with a name, talk in
// one room, send private messages to a user (all of that user's tabs get
// them), and see who is online. The browser side is static/chat.js, which uses
// the client the sente server serves at /chsk/client.js.
//
// The handler is built by [New] so that cmd main and the browser tests serve
// the same thing; copy it as a starting point.
package chatapp

import (
	"context"
	"crypto/rand"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/wsasync/wsasync/sente"
)

//go:embed static
var static embed.FS

var page = template.Must(template.ParseFS(static, "static/index.html"))

// cookieName names the session cookie.
const cookieName = "chat_session"

// Sessions maps session ids (the cookie) to who signed in. A real application
// would keep them in its database; this one keeps them in memory.
type Sessions struct {
	mu sync.Mutex
	m  map[string]session
}

type session struct {
	name string // the user id of every connection of the session
	csrf string // the token the page must present on /chsk and forms
}

// NewSessions returns an empty session store.
func NewSessions() *Sessions { return &Sessions{m: make(map[string]session)} }

// create starts a session for name and returns its id.
func (s *Sessions) create(name string) string {
	id := rand.Text()
	s.mu.Lock()
	s.m[id] = session{name: name, csrf: rand.Text()}
	s.mu.Unlock()
	return id
}

// get returns the session of the request's cookie.
func (s *Sessions) get(r *http.Request) (session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return session{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[c.Value]
	return sess, ok
}

func (s *Sessions) delete(r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		s.mu.Lock()
		delete(s.m, c.Value)
		s.mu.Unlock()
	}
}

// Options configure [New].
type Options struct {
	// Sessions is the session store. Nil means a new one; pass the same
	// store to a new App to keep people signed in across a restart.
	Sessions *Sessions
	// Logger receives the sente server's log. Nil means slog.Default().
	Logger *slog.Logger
	// Broker lets several chat servers share one room (see sente.Broker).
	// Nil means this server alone.
	Broker sente.Broker
}

// App is the chat's HTTP handler. Stop it with Shutdown.
type App struct {
	mux      *http.ServeMux
	chsk     *sente.Server
	sessions *Sessions
	log      *slog.Logger
	stop     context.CancelFunc
	done     chan struct{} // closed when the event router has returned
}

// New builds the chat and starts handling its events.
func New(opts Options) *App {
	a := &App{mux: http.NewServeMux(), sessions: opts.Sessions, done: make(chan struct{})}
	if a.sessions == nil {
		a.sessions = NewSessions()
	}
	a.log = opts.Logger
	if a.log == nil {
		a.log = slog.Default()
	}
	a.chsk = sente.NewServer(sente.Options{
		Broker: opts.Broker,
		// The user id of a connection is the name of its session; every
		// tab of a session, and every session of that name, is one user.
		UserID: func(r *http.Request, clientID string) string {
			sess, _ := a.sessions.get(r)
			return sess.name
		},
		// The page embeds its session's token and the client sends it
		// back; without a session the token is "" and sente refuses the
		// request, so only signed-in pages connect.
		CSRFToken: func(r *http.Request) string {
			sess, _ := a.sessions.get(r)
			return sess.csrf
		},
		Logger: a.log,
	})

	// Mounted on both so that /chsk/client.js is served too.
	a.mux.Handle("/chsk", a.chsk)
	a.mux.Handle("/chsk/", a.chsk)
	a.mux.HandleFunc("GET /{$}", a.index)
	a.mux.HandleFunc("POST /login", a.login)
	a.mux.HandleFunc("POST /logout", a.logout)
	assets, _ := fs.Sub(static, "static")
	a.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(assets)))

	r := sente.Router{Logger: a.log} // one worker: events are handled in order
	r.Handle("chat/say", a.say)
	r.Handle("chat/private", a.private)
	r.Handle("chat/users?", a.users)
	r.Handle(sente.EventUserOpen, a.presence)
	r.Handle(sente.EventUserClose, a.presence)
	ctx, stop := context.WithCancel(context.Background())
	a.stop = stop
	go func() {
		defer close(a.done)
		r.Run(ctx, a.chsk.Events())
	}()
	return a
}

func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Shutdown closes every connection (clients reconnect by themselves once a
// server is back) and stops the event router.
func (a *App) Shutdown(ctx context.Context) error {
	err := a.chsk.Shutdown(ctx)
	a.stop()
	<-a.done
	return err
}

// ---- pages ----

type pageData struct {
	Name, CSRF, Error string
}

func (a *App) index(w http.ResponseWriter, r *http.Request) {
	sess, _ := a.sessions.get(r)
	a.render(w, http.StatusOK, pageData{Name: sess.name, CSRF: sess.csrf})
}

func (a *App) render(w http.ResponseWriter, status int, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store") // the page holds the CSRF token
	w.WriteHeader(status)
	if err := page.Execute(w, d); err != nil {
		a.log.Error("chat: rendering the page", "err", err)
	}
}

// login starts a session for the name in the form: a plain form POST, so the
// cookie is set before any connection opens.
func (a *App) login(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimSpace(r.PostFormValue("name"))
	if !validName(name) {
		a.render(w, http.StatusBadRequest, pageData{Error: "A name is 1 to 24 letters, digits, spaces, - or _."})
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    a.sessions.create(name),
		Path:     "/",
		HttpOnly: true,                 // scripts never see it
		SameSite: http.SameSiteLaxMode, // other sites' posts do not carry it
		// Secure: true, once served over HTTPS.
	})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// logout ends the session; the form carries the CSRF token.
func (a *App) logout(w http.ResponseWriter, r *http.Request) {
	if sess, ok := a.sessions.get(r); ok && r.PostFormValue("csrf") == sess.csrf {
		a.sessions.delete(r)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Path: "/", MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func validName(s string) bool {
	if s == "" || utf8.RuneCountInString(s) > 24 {
		return false
	}
	for _, c := range s {
		if !unicode.IsLetter(c) && !unicode.IsDigit(c) && !strings.ContainsRune(" -_", c) {
			return false
		}
	}
	return true
}
