package storage

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver"
	regerr "github.com/registryd/registryd/errors"
)

// ErrBlobCorrupt reports stored bytes that do not hash to their digest. The response that
// was streaming them is cut short so the client never takes them for the blob.
var ErrBlobCorrupt = errors.New("stored blob does not match its digest")

// BlobInfo describes a blob of a repository.
type BlobInfo struct {
	Digest digest.Digest
	Size   int64
}

// StatBlob returns the blob's size if the repository holds it, BLOB_UNKNOWN if it does not.
// It looks the repository's link up first, so a blob the repository lacks (the usual
// answer to a pusher's HEAD) costs one backend call.
//
// With Options.TouchOnHead a blob found is also touched for garbage collection (one more
// small write, whose failure is only logged): a pusher that found it is about to
// reference it (see gc_protect.go).
func (r *Registry) StatBlob(ctx context.Context, repo string, d digest.Digest) (BlobInfo, error) {
	b, err := r.statBlob(ctx, repo, d)
	if err == nil && r.opts.TouchOnHead {
		if err := r.touch(ctx, d); err != nil {
			// The marker only spares the pusher a retry; the answer stands without it.
			r.opts.Logger.WarnContext(ctx, "blob HEAD: writing the garbage collection push marker failed", "repository", repo, "digest", d, "error", err)
		}
	}
	return b, err
}

// statBlob is StatBlob without the push marker.
func (r *Registry) statBlob(ctx context.Context, repo string, d digest.Digest) (BlobInfo, error) {
	_, linkErr := r.d.Stat(ctx, layerLinkPath(repo, d))
	var fi driver.Info
	var dataErr error
	if linkErr == nil {
		fi, dataErr = r.d.Stat(ctx, blobDataPath(d))
	}
	return blobInfo(d, fi, linkErr, dataErr)
}

// StatBlobForRead is StatBlob for a request about to read the blob: the repository's link
// and the blob's data are looked up at once, so a blob that is there costs one backend
// round trip instead of two (and one wasted lookup when the repository lacks it).
func (r *Registry) StatBlobForRead(ctx context.Context, repo string, d digest.Digest) (BlobInfo, error) {
	// The data's lookup is cancelled as soon as the link is known to be missing or
	// unreadable: its answer no longer matters.
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	data := r.statInBackground(dctx, blobDataPath(d))
	_, linkErr := r.d.Stat(ctx, layerLinkPath(repo, d))
	if linkErr != nil {
		cancel()
	}
	fi, dataErr := data.Wait()
	return blobInfo(d, fi, linkErr, dataErr)
}

// blobInfo is the answer to a lookup of a repository's blob whose link Stat failed with
// linkErr and whose data Stat (fi, meaningful only when linkErr is nil) with dataErr.
func blobInfo(d digest.Digest, fi driver.Info, linkErr, dataErr error) (BlobInfo, error) {
	detail := map[string]string{"digest": d.String()}
	if linkErr != nil {
		return BlobInfo{}, notFound(linkErr, regerr.BlobUnknown, detail, "stat blob link")
	}
	if dataErr != nil {
		return BlobInfo{}, notFound(dataErr, regerr.BlobUnknown, detail, "stat blob data")
	}
	if err := checkEmpty(d, fi.Size); err != nil {
		return BlobInfo{}, err
	}
	return BlobInfo{Digest: d, Size: fi.Size}, nil
}

// checkEmpty refuses a stored object of size 0 for a digest that is not the empty
// content's: no byte of it would be hashed before the response is complete.
func checkEmpty(d digest.Digest, size int64) error {
	if size == 0 && d != d.Algorithm().FromBytes(nil) {
		return fmt.Errorf("blob %s is stored with 0 bytes: %w", d, ErrBlobCorrupt)
	}
	return nil
}

// Redirects reports whether blob GETs may be answered with a redirect (BlobURL).
func (r *Registry) Redirects() bool { return r.opts.Redirect }

// BlobURL returns a pre-signed backend URL for the blob's bytes when redirects are enabled
// and the driver can sign; otherwise it returns "" and nil. The caller has checked the
// blob exists in the repository (StatBlob).
func (r *Registry) BlobURL(ctx context.Context, d digest.Digest) (string, error) {
	if !r.opts.Redirect {
		return "", nil
	}
	u, err := r.d.URL(ctx, blobDataPath(d), r.opts.RedirectExpiry)
	if errors.Is(err, driver.ErrUnsupported) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("sign blob url: %w", err)
	}
	return u, nil
}

// BlobReader streams a range of a blob, opened by OpenBlob.
type BlobReader struct {
	src          *resumingReader
	b            BlobInfo
	offset, size int64
	cancel       context.CancelFunc // ends the context of the stream; nil when it is the caller's
}

// OpenBlob opens bytes [offset, offset+length) of the blob (length < 0: to the end) and
// returns once the backend has answered, so a failure to open is still a clean error
// response (BLOB_UNKNOWN if the bytes are truly missing, otherwise a backend error). The
// caller has checked the range against the size from StatBlob and must Close the reader.
func (r *Registry) OpenBlob(ctx context.Context, b BlobInfo, offset, length int64) (*BlobReader, error) {
	if length < 0 {
		length = b.Size - offset
	}
	var rc io.ReadCloser
	if length > 0 {
		var err error
		if rc, err = r.d.Reader(ctx, blobDataPath(b.Digest), offset, length); err != nil {
			return nil, notFound(err, regerr.BlobUnknown, map[string]string{"digest": b.Digest.String()}, "open blob")
		}
	}
	return r.newBlobReader(ctx, b, offset, length, rc), nil
}

// OpenBlobForRead opens the whole blob if the repository holds it (BLOB_UNKNOWN if not),
// learning its size from the stream: the repository's link is looked up while the
// backend opens the stream, so a blob that is there costs one backend round trip before
// its bytes flow. The caller must Close the reader.
func (r *Registry) OpenBlobForRead(ctx context.Context, repo string, d digest.Digest) (*BlobReader, error) {
	detail := map[string]string{"digest": d.String()}
	// The stream is opened while the link is looked up. It outlives this call: its context
	// ends with the reader's Close, or at once when the link is missing or unreadable.
	sctx, cancel := context.WithCancel(ctx)
	open := inBackground("open blob", func() (io.ReadCloser, error) { return r.d.Reader(sctx, blobDataPath(d), 0, -1) })
	_, linkErr := r.d.Stat(ctx, layerLinkPath(repo, d))
	if linkErr != nil {
		cancel()
	}
	rc, openErr := open.Wait()
	fail := func(err error) (*BlobReader, error) {
		if openErr == nil {
			rc.Close()
		}
		cancel()
		return nil, err
	}
	if linkErr != nil {
		return fail(notFound(linkErr, regerr.BlobUnknown, detail, "stat blob link"))
	}
	if openErr != nil {
		return fail(notFound(openErr, regerr.BlobUnknown, detail, "open blob"))
	}
	size := driver.ReaderSize(rc)
	if size < 0 {
		// The backend did not say: ask, for the same version.
		fi, err := r.d.Stat(ctx, blobDataPath(d))
		if err != nil {
			return fail(notFound(err, regerr.BlobUnknown, detail, "stat blob data"))
		}
		if v := driver.ReaderVersion(rc); v != fi.Version {
			return fail(fmt.Errorf("blob %s was replaced while opening it (version %q, then %q)", d, v, fi.Version))
		}
		size = fi.Size
	}
	if err := checkEmpty(d, size); err != nil {
		return fail(err)
	}
	br := r.newBlobReader(sctx, BlobInfo{Digest: d, Size: size}, 0, size, rc)
	br.cancel = cancel
	return br, nil
}

// newBlobReader reads bytes [offset, offset+length) of blob b starting with the stream rc
// (nil when length is 0).
func (r *Registry) newBlobReader(ctx context.Context, b BlobInfo, offset, length int64, rc io.ReadCloser) *BlobReader {
	src := &resumingReader{ctx: ctx, r: r, path: blobDataPath(b.Digest), off: offset, end: offset + length}
	if rc != nil {
		src.rc, src.version = rc, driver.ReaderVersion(rc)
	}
	return &BlobReader{src: src, b: b, offset: offset, size: length}
}

// Info returns the blob the reader reads.
func (br *BlobReader) Info() BlobInfo { return br.b }

// Close releases the backend stream.
func (br *BlobReader) Close() error {
	err := br.src.Close()
	if br.cancel != nil {
		br.cancel()
	}
	return err
}

// WriteTo writes the opened range to w. When the whole blob was opened its bytes are
// hashed while streaming and the last byte is only written once the hash matches the
// digest, so a corrupt object can never reach a client as a complete response; the
// hashing is skipped only for the very backend version of the object this process has
// already verified (see verifiedSet). A backend stream that breaks mid-body is resumed
// with ranged reads of the same version, up to Options.ReadRetries times in a row without
// progress.
func (br *BlobReader) WriteTo(w io.Writer) (int64, error) {
	length := br.size
	buf := make([]byte, 256<<10)
	verified := br.src.r.verified
	if br.offset != 0 || length != br.b.Size || length == 0 || verified.has(br.b.Digest, br.src.version) {
		return io.CopyBuffer(w, io.LimitReader(br.src, length), buf)
	}
	d := br.b.Digest
	h := d.Algorithm().Hash()
	n, err := hashedCopy(w, br.src, h, length-1, buf)
	if err != nil {
		return n, err
	}
	last := buf[:1]
	if _, err := io.ReadFull(br.src, last); err != nil {
		return n, fmt.Errorf("read blob %s: %w", d, noEOF(err))
	}
	h.Write(last)
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		return n, fmt.Errorf("blob %s hashes to %s: %w", d, got, ErrBlobCorrupt)
	}
	verified.add(d, br.src.version)
	m, err := w.Write(last)
	return n + int64(m), err
}

// hashedBuffers is how many read buffers hashedCopy keeps in flight.
const hashedBuffers = 4

// hashedCopy copies exactly n bytes from src to w and into h, hashing in a second
// goroutine so that hashing one buffer overlaps reading and writing the next (on a busy
// machine the two run on different cores). first is one of the buffers it uses. It
// returns once h holds every byte copied, with io.ErrUnexpectedEOF if src ends early.
func hashedCopy(w io.Writer, src io.Reader, h hash.Hash, n int64, first []byte) (int64, error) {
	free := make(chan []byte, hashedBuffers)
	free <- first
	for range hashedBuffers - 1 {
		free <- make([]byte, len(first))
	}
	work := make(chan []byte, hashedBuffers)
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for b := range work {
			h.Write(b)
			free <- b[:cap(b)]
		}
	}()
	var written int64
	var err error
	for written < n && err == nil {
		buf := <-free
		var k int
		k, err = src.Read(buf[:min(int64(len(buf)), n-written)])
		if k > 0 {
			// The hasher only reads buf; it is not reused before the write below is done
			// (this loop takes the next buffer after it).
			work <- buf[:k]
			var m int
			m, err = w.Write(buf[:k])
			written += int64(m)
			if err == nil && m < k {
				err = io.ErrShortWrite
			}
		} else {
			free <- buf
		}
	}
	close(work)
	<-hashed
	if written == n {
		return written, nil
	}
	return written, noEOF(err)
}

// noEOF turns io.EOF, the end of a stream that should have gone on, into
// io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// resumingReader reads [off, end) of an object, reopening at the current offset when the
// backend stream fails, with a short backoff, up to r.opts.ReadRetries attempts without
// progress.
type resumingReader struct {
	ctx      context.Context
	r        *Registry
	path     string
	off, end int64
	rc       io.ReadCloser
	version  string // of the first stream; every resumed stream must have it too
	failures int
}

func (s *resumingReader) Read(p []byte) (int, error) {
	for {
		if s.off >= s.end {
			return 0, io.EOF
		}
		if s.rc == nil {
			rc, err := s.r.d.Reader(s.ctx, s.path, s.off, s.end-s.off)
			if err != nil {
				if errors.Is(err, driver.ErrNotFound) || !s.retry() {
					return 0, fmt.Errorf("open %s at %d: %w", s.path, s.off, err)
				}
				continue
			}
			if v := driver.ReaderVersion(rc); v != s.version {
				// The object was replaced since the response began: its bytes cannot be
				// spliced onto the ones already sent.
				rc.Close()
				return 0, fmt.Errorf("reopen %s at %d: version %q, the response began with %q: %w", s.path, s.off, v, s.version, ErrBlobCorrupt)
			}
			s.rc = rc
		}
		n, err := s.rc.Read(p[:min(int64(len(p)), s.end-s.off)])
		s.off += int64(n)
		if n > 0 {
			s.failures = 0
		}
		if err == nil || (errors.Is(err, io.EOF) && s.off >= s.end) {
			if n > 0 || err == nil {
				return n, nil
			}
			return 0, io.EOF
		}
		// The stream ended early or failed: reopen at s.off.
		s.rc.Close()
		s.rc = nil
		if n > 0 {
			return n, nil
		}
		if !s.retry() {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("read %s at %d: %w", s.path, s.off, err)
		}
	}
}

// retry sleeps before another attempt and reports whether one is allowed.
func (s *resumingReader) retry() bool {
	if s.ctx.Err() != nil || s.failures >= s.r.opts.ReadRetries {
		return false
	}
	s.failures++
	t := time.NewTimer(time.Duration(s.failures*s.failures) * 50 * time.Millisecond)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (s *resumingReader) Close() error {
	if s.rc != nil {
		return s.rc.Close()
	}
	return nil
}

// DeleteBlob removes the blob from the repository (its bytes stay for other repositories
// until garbage collection). BLOB_UNKNOWN if the repository does not hold it.
func (r *Registry) DeleteBlob(ctx context.Context, repo string, d digest.Digest) error {
	err := r.d.Delete(ctx, layerLinkPath(repo, d))
	if err != nil {
		return notFound(err, regerr.BlobUnknown, map[string]string{"digest": d.String()}, "delete blob link")
	}
	return nil
}

// MountBlob links blob d of repository from into repo. With from == "" (an anonymous
// mount, OCI v1.1) any stored blob with that digest is linked: the client proved it knows
// the content's digest. It reports false (and no error) when there is no such blob, so
// the caller falls back to a normal upload.
func (r *Registry) MountBlob(ctx context.Context, repo, from string, d digest.Digest) (bool, error) {
	var err error
	if from != "" {
		_, err = r.statBlob(ctx, from, d)
	} else if _, err = r.d.Stat(ctx, blobDataPath(d)); err != nil {
		err = notFound(err, regerr.BlobUnknown, nil, "stat blob data")
	}
	if err != nil {
		if regerr.Of(err, regerr.BlobUnknown) {
			return false, nil
		}
		return false, err
	}
	if err := r.linkBlob(ctx, repo, d, true); err != nil {
		return false, fmt.Errorf("mount: %w", err)
	}
	return true, nil
}
