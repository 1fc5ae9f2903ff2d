package handlers_test

import (
	"testing"

	"github.com/sluicehq/sluice/handlers"
)

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pass@host/x?y=1":  "https://user:(set)@host/x?y=1",
		"https://user:p%40ss@host:8443": "https://user:(set)@host:8443",
		"https://user@host/":            "https://user@host/",
		"https://host/a":                "https://host/a",
		"http://u:p@[::1]:80/":          "http://u:(set)@[::1]:80/",
		"http://u:p@ho st/%zz":          "(set)", // does not parse, and may hold a password
		"%zz":                           "%zz",
	} {
		if got := handlers.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKeepSecrets(t *testing.T) {
	old := &handlers.Spec{HTTP: &handlers.HTTPSpec{URL: "https://u:pw@h/x", Headers: map[string]string{"A": "1", "B": "2"}}}
	back := old.Redacted()
	if old.HTTP.Headers["A"] != "1" || old.HTTP.URL != "https://u:pw@h/x" {
		t.Fatalf("Redacted changed its receiver: %+v", old.HTTP)
	}
	back.HTTP.Headers["B"] = "new"
	if err := back.KeepSecrets(old); err != nil {
		t.Fatal(err)
	}
	if back.HTTP.URL != "https://u:pw@h/x" || back.HTTP.Headers["A"] != "1" || back.HTTP.Headers["B"] != "new" {
		t.Fatalf("kept: %+v", back.HTTP)
	}
	moved := &handlers.Spec{HTTP: &handlers.HTTPSpec{URL: "https://u:(set)@h/elsewhere"}}
	if err := moved.KeepSecrets(old); err != nil || moved.HTTP.URL != "https://u:pw@h/elsewhere" {
		t.Fatalf("new path, same user: %v %q", err, moved.HTTP.URL)
	}
	other := &handlers.Spec{HTTP: &handlers.HTTPSpec{URL: "https://v:(set)@h/x"}}
	if err := other.KeepSecrets(old); err == nil {
		t.Fatal("(set) for another user's password was accepted")
	}
}
