package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	ksasl "github.com/twmb/franz-go/pkg/sasl"
	kplain "github.com/twmb/franz-go/pkg/sasl/plain"
	kscram "github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/broker"
)

// kafkaAccess is how every Kafka connection the node makes is secured:
// kafka-go's dialers and transports (consumers, producers, admin, the
// registry and the state tables) and franz-go's group clients.
type kafkaAccess struct {
	tls   *tls.Config    // nil: plaintext
	mech  sasl.Mechanism // kafka-go's; nil: no SASL
	group ksasl.Mechanism
	// describe says what is used, for the log and for errors; no secret.
	describe string
}

// embeddedAccess is the embedded broker's own listener.
type embeddedAccess struct {
	sasl broker.SASL
	tls  *tls.Config
	leaf []byte // the broker's certificate (DER), which the node's clients pin
}

// loadEmbeddedAccess reads embedded.tls and embedded.sasl.
func loadEmbeddedAccess(cfg Config) (embeddedAccess, error) {
	var e embeddedAccess
	if cfg.Embedded.SASL.Mechanism != "" {
		pw, err := password(cfg.Embedded.SASL, "embedded.sasl")
		if err != nil {
			return e, err
		}
		e.sasl = broker.SASL{Mechanism: cfg.Embedded.SASL.Mechanism, User: cfg.Embedded.SASL.Username, Password: pw}
	}
	if cfg.Embedded.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Embedded.TLS.CertFile, cfg.Embedded.TLS.KeyFile)
		if err != nil {
			return e, fmt.Errorf("embedded.tls: %w", err)
		}
		e.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		e.leaf = cert.Certificate[0]
	}
	return e, nil
}

// loadKafkaAccess builds the clients' security: for --brokers from the
// kafka section; for the embedded broker from its own settings (its SASL
// account, and TLS that trusts exactly its certificate).
func loadKafkaAccess(cfg Config, emb embeddedAccess) (kafkaAccess, error) {
	var a kafkaAccess
	s := cfg.Kafka.SASL
	if len(cfg.Brokers) == 0 {
		s = cfg.Embedded.SASL
		if emb.tls != nil {
			leaf := emb.leaf
			a.tls = &tls.Config{
				MinVersion: tls.VersionTLS12,
				// The node dials its own broker: it checks the certificate
				// is exactly the one it serves, whatever names it carries.
				InsecureSkipVerify: true,
				VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
					if len(raw) == 0 || !bytes.Equal(raw[0], leaf) {
						return errors.New("the embedded broker presented a certificate other than embedded.tls.certFile")
					}
					return nil
				},
			}
		}
	} else if t := cfg.Kafka.TLS; t.On() {
		a.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return a, fmt.Errorf("kafka.tls.caFile: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return a, fmt.Errorf("kafka.tls.caFile: %s holds no PEM certificate", t.CAFile)
			}
			a.tls.RootCAs = pool
		}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return a, fmt.Errorf("kafka.tls: the client certificate: %w", err)
			}
			a.tls.Certificates = []tls.Certificate{cert}
		}
	}
	a.describe = "plaintext"
	if a.tls != nil {
		a.describe = "TLS"
	}
	if s.Mechanism == "" {
		return a, nil
	}
	path := "kafka.sasl"
	if len(cfg.Brokers) == 0 {
		path = "embedded.sasl"
	}
	pw, err := password(s, path)
	if err != nil {
		return a, err
	}
	switch s.Mechanism {
	case SASLPlain:
		a.mech = plain.Mechanism{Username: s.Username, Password: pw}
		a.group = kplain.Auth{User: s.Username, Pass: pw}.AsMechanism()
	case SASLSCRAMSHA256, SASLSCRAMSHA512:
		algo, auth := scram.SHA256, kscram.Auth{User: s.Username, Pass: pw}
		a.group = auth.AsSha256Mechanism()
		if s.Mechanism == SASLSCRAMSHA512 {
			algo, a.group = scram.SHA512, auth.AsSha512Mechanism()
		}
		if a.mech, err = scram.Mechanism(algo, s.Username, pw); err != nil {
			return a, fmt.Errorf("%s: %w", path, err)
		}
	}
	a.describe += " with SASL " + s.Mechanism + " as " + s.Username
	return a, nil
}

func password(s SASL, path string) (string, error) {
	if s.Password != "" {
		return s.Password, nil
	}
	pw, err := ResolveRef(s.PasswordRef)
	if err != nil {
		return "", fmt.Errorf("%s.passwordRef: %w", path, err)
	}
	return pw, nil
}

// probeKafka makes the node's first contact with Kafka, so that a
// credential or certificate problem stops the start with one clear line
// instead of a node that retries forever. A broker that is merely down is
// no such problem: the node starts, reports not ready, and catches up.
func (n *Node) probeKafka(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	where := strings.Join(n.brokers, ",")
	var last error
	// A closed connection may be a broker restarting: a few tries tell it
	// from one that closes every connection (it wants TLS or SASL).
	for try := 1; ; try++ {
		_, err := n.tc.List(ctx)
		if err == nil {
			n.log.Info("connected to Kafka", "brokers", where, "security", n.kafka.describe)
			return nil
		}
		last = err
		if hint := accessProblem(err); hint != "" {
			return fmt.Errorf("connecting to Kafka at %s (%s): %s: %w", where, n.kafka.describe, hint, err)
		}
		if !isClosedByPeer(err) || ctx.Err() != nil {
			break
		}
		if try == 5 {
			hint := "does it want TLS or SASL (kafka.tls, kafka.sasl)?"
			if n.kafka.mech != nil {
				// kfake, for one, closes the connection on a failed login.
				hint = "check the SASL user, password and mechanism (kafka.sasl), and whether it wants TLS (kafka.tls)"
			}
			return fmt.Errorf("connecting to Kafka at %s (%s): the broker closes every connection: %s: %w", where, n.kafka.describe, hint, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(try) * 200 * time.Millisecond):
		}
	}
	n.log.Warn("Kafka is not reachable yet; starting anyway", "brokers", where, "err", last)
	return nil
}

// accessProblem names what is wrong when err is a certificate or login
// failure, and is empty otherwise.
func accessProblem(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recordHdr tls.RecordHeaderError
	var alert tls.AlertError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknownCA):
		return "the broker's certificate is signed by an unknown CA: set kafka.tls.caFile"
	case errors.As(err, &hostErr):
		return "the broker's certificate is not for this address: set kafka.tls.serverName"
	case errors.As(err, &invalid), errors.As(err, &verify):
		return "the broker's certificate was refused"
	case errors.As(err, &recordHdr):
		return "the broker does not speak TLS: unset kafka.tls"
	case errors.As(err, &alert):
		return "the broker refused the TLS handshake (a client certificate? kafka.tls.certFile)"
	case errors.Is(err, kafka.SASLAuthenticationFailed):
		return "SASL authentication failed: check the user and password"
	case errors.Is(err, kafka.UnsupportedSASLMechanism):
		return "the broker does not accept this SASL mechanism"
	case errors.Is(err, kafka.IllegalSASLState):
		return "the broker does not expect SASL here: does it want kafka.sasl at all?"
	case strings.Contains(err.Error(), "SASL"):
		return "SASL failed"
	}
	return ""
}

func isClosedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}
