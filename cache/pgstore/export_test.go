package pgstore

// The statements whose plans the tests check.
var (
	QueryCollect = qCollect
	QueryRead    = qRead
	QueryKeys    = qKeys
	QueryTagged  = qTagged
)
