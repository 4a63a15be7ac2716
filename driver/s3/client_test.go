package s3

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// NewTestClient returns a path-style client of the S3-compatible store at endpoint
// (region "" signs for us-east-1) with static credentials, as registryd builds it for
// storage.s3 with regionendpoint and forcepathstyle set. It is for this package's tests.
func NewTestClient(region, endpoint, accessKey, secretKey string) *s3.Client {
	if region == "" {
		region = "us-east-1"
	}
	return s3.New(s3.Options{
		Region:       region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
	})
}
