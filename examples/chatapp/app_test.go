package chatapp_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wsasync/wsasync/examples/chatapp"
)

// TestSignInAndAjax checks the pages and the CSRF wiring without a browser,
// speaking the Ajax transport with plain HTTP (the browser tests in
// browser_test cover the rest).
func TestSignInAndAjax(t *testing.T) {
	a := chatapp.New(chatapp.Options{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	srv := httptest.NewServer(a)
	defer srv.Close()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 5 * time.Second}

	do := func(req *http.Request) (int, string) {
		t.Helper()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	post := func(path string, form url.Values) (int, string) {
		req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return do(req)
	}
	chsk := func(method, token, body string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+"/chsk?client-id=test1", strings.NewReader(body))
		if token != "" {
			req.Header.Set("X-CSRF-Token", token)
		}
		return do(req)
	}

	if code, body := post("/login", url.Values{"name": {"<script>"}}); code != 400 || !strings.Contains(body, "A name is") {
		t.Errorf("bad name: %d %q", code, body)
	}
	code, body := post("/login", url.Values{"name": {"alice"}})
	if code != 200 || !strings.Contains(body, `<meta name="chat-user" content="alice">`) {
		t.Fatalf("sign in: %d %q", code, body)
	}
	m := regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in %q", body)
	}
	token := m[1]

	if code, _ := chsk("GET", "", ""); code != http.StatusForbidden {
		t.Errorf("poll without token: %d, want 403", code)
	}
	if code, _ := chsk("GET", "WRONG", ""); code != http.StatusForbidden {
		t.Errorf("poll with a wrong token: %d, want 403", code)
	}
	if code, body := chsk("GET", token, ""); code != 200 || !regexp.MustCompile(`^\[\["chsk/handshake",\["alice",null,null,"[0-9a-f]+\.\d+",false\]\],null\]$`).MatchString(body) {
		t.Errorf("handshake: %d %s", code, body)
	}
	if code, body := chsk("POST", token, `[["chat/users?"],"cb1"]`); code != 200 || body != `[["alice"],"cb1"]` {
		t.Errorf("chat/users?: %d %s", code, body)
	}
	if code, body := chsk("POST", token, `[["chat/private",{"to":"bob","text":"hi"}],"cb2"]`); code != 200 || body != `[{"error":"bob is not online"},"cb2"]` {
		t.Errorf("chat/private to nobody: %d %s", code, body)
	}
	if code, body := chsk("POST", token, `[["chat/say",{"text":"hello"}],"cb3"]`); code != 200 || body != `[{"ok":true},"cb3"]` {
		t.Errorf("chat/say: %d %s", code, body)
	}
	// The room message waits for a poll, after the users list pushed when
	// alice came online (in the same batch or the one before).
	var polled []string
	for range 2 {
		code, body := chsk("GET", token, "")
		if code != 200 {
			t.Fatalf("poll: %d %s", code, body)
		}
		polled = append(polled, body)
		if strings.Contains(body, `["chat/msg",{"from":"alice","text":"hello","at":`) {
			break
		}
	}
	if all := strings.Join(polled, " "); !strings.Contains(all, `["chat/users",["alice"]]`) || !strings.Contains(all, `"chat/msg"`) {
		t.Errorf("polls after chat/say: %s", all)
	}
	if code, body := chsk("POST", token, `[["chat/say",{"text":"   "}],"cb4"]`); code != 200 || !strings.Contains(body, `"error"`) {
		t.Errorf("empty chat/say: %d %s", code, body)
	}
}
