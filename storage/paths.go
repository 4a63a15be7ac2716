package storage

import (
	"github.com/opencontainers/go-digest"
)

// The storage layout. Every object key registryd reads or writes is built here.
//
//	docker/registry/v2/
//	├── _health/<random hex>                                           readiness write probe (written, then deleted)
//	├── _gc/lease                                                      garbage collection lease (JSON: holder, epoch, expiry)
//	├── _gc/started                                                    backend time at which the current GC run began
//	├── _gc/sweeping                                                   present while a GC sweep batch deletes
//	├── _gc/touched/<alg>-<hex>                                        blob linked or found for a push (see gc_protect.go)
//	├── _gc/plan.json                                                  the last GC plan (dry run or run)
//	├── blobs/<alg>/<first two hex>/<hex>/data                      blob and manifest bytes
//	└── repositories/<name>/
//	    ├── _layers/<alg>/<hex>/link                                   blob is in the repository
//	    ├── _manifests/revisions/<alg>/<hex>/link                      manifest is in the repository
//	    ├── _manifests/tags/<tag>/current/link                         what the tag points at
//	    ├── _manifests/tags/<tag>/index/<alg>/<hex>/link               every manifest the tag held
//	    ├── _uploads/<id>/startedat                                    upload session marker
//	    ├── _uploads/<id>/data                                         upload bytes (driver Writer)
//	    ├── _uploads/<id>/acknowledged                                 last acknowledged upload state
//	    └── _referrers/<subject alg>/<subject hex>/<alg>-<hex>         referrer descriptor (JSON)
//
// Link objects hold the digest string ("sha256:..."), as in CNCF Distribution. The
// _referrers subtree is registryd's own: Distribution ignores it, as it does _health, which
// lies outside the blobs and repositories trees that catalog, GC and fsck walk. So is an
// upload's acknowledged object: the offset, hash state and driver resume state of the
// upload's last acknowledged chunk, replaced at every chunk and removed with the upload,
// from which a replayed older token resumes (see acked.go).
const rootPrefix = "docker/registry/v2"

func healthProbePath(id string) string { return rootPrefix + "/_health/" + id }

// GCLeasePath is the path of the lease that elects the one replica running garbage
// collection (see AcquireLease); like _health it lies outside the trees GC walks.
const GCLeasePath = rootPrefix + "/_gc/lease"

func gcDir() string { return rootPrefix + "/_gc" }

// GCPlanPath is where a GC run writes its plan.
func GCPlanPath() string { return gcDir() + "/plan.json" }

func gcStartedPath() string { return gcDir() + "/started" }

func gcSweepingPath() string { return gcDir() + "/sweeping" }

// gcAnnouncingPath is written by a run that found no gcAnnouncedPath, before it waits
// the announce period (see gc_collected.go); gcAnnouncedPath once it has waited.
func gcAnnouncingPath() string { return gcDir() + "/announcing" }

func gcAnnouncedPath() string { return gcDir() + "/announced" }

func gcTouchedDir() string { return gcDir() + "/touched" }

func gcTouchedPath(d digest.Digest) string {
	return gcTouchedDir() + "/" + d.Algorithm().String() + "-" + d.Encoded()
}

func blobsDir() string { return rootPrefix + "/blobs" }

func layersDir(name string) string { return repoDir(name) + "/_layers" }

func revisionsDir(name string) string { return repoDir(name) + "/_manifests/revisions" }

func tagIndexDir(name, tag string) string { return tagDir(name, tag) + "/index" }

func blobDataPath(d digest.Digest) string {
	hex := d.Encoded()
	return rootPrefix + "/blobs/" + d.Algorithm().String() + "/" + hex[:2] + "/" + hex + "/data"
}

func repositoriesDir() string { return rootPrefix + "/repositories" }

func repoDir(name string) string { return repositoriesDir() + "/" + name }

func layerLinkPath(name string, d digest.Digest) string {
	return repoDir(name) + "/_layers/" + d.Algorithm().String() + "/" + d.Encoded() + "/link"
}

func revisionLinkPath(name string, d digest.Digest) string {
	return repoDir(name) + "/_manifests/revisions/" + d.Algorithm().String() + "/" + d.Encoded() + "/link"
}

func tagsDir(name string) string { return repoDir(name) + "/_manifests/tags" }

func tagDir(name, tag string) string { return tagsDir(name) + "/" + tag }

func tagCurrentPath(name, tag string) string { return tagDir(name, tag) + "/current/link" }

func tagIndexLinkPath(name, tag string, d digest.Digest) string {
	return tagDir(name, tag) + "/index/" + d.Algorithm().String() + "/" + d.Encoded() + "/link"
}

func uploadDir(name, id string) string { return repoDir(name) + "/_uploads/" + id }

func uploadDataPath(name, id string) string { return uploadDir(name, id) + "/data" }

func uploadStartedPath(name, id string) string { return uploadDir(name, id) + "/startedat" }

func uploadAckedPath(name, id string) string { return uploadDir(name, id) + "/acknowledged" }

func referrersDir(name string, subject digest.Digest) string {
	return repoDir(name) + "/_referrers/" + subject.Algorithm().String() + "/" + subject.Encoded()
}

func referrerPath(name string, subject, d digest.Digest) string {
	return referrersDir(name, subject) + "/" + d.Algorithm().String() + "-" + d.Encoded()
}
