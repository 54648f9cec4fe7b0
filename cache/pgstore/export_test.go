package pgstore

// The statements whose plans the tests check.
var (
	QueryCollect  = qCollect
	QueryRead     = qRead
	QueryReadMany = qReadMany
	QueryKeys     = qKeys
	QueryTagged   = qTagged
)
