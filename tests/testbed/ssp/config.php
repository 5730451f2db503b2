<?php
// SimpleSAMLphp test IdP for rolegate: Debian's defaults, then loopback overrides.
// Run with SIMPLESAMLPHP_CONFIG_DIR=<a copy of this folder's layout> and SSP_PORT.
require '/etc/simplesamlphp/config.php';
$here = dirname(__DIR__);
$port = getenv('SSP_PORT') ?: '9100';
$config = array_merge($config, [
    'baseurlpath' => "http://127.0.0.1:$port/",
    'certdir' => "$here/cert/",
    'metadatadir' => "$here/metadata/",
    'datadir' => "$here/data/",
    'tempdir' => "$here/tmp/",
    'loggingdir' => "$here/log/",
    'logging.handler' => 'file',
    'logging.logfile' => 'simplesamlphp.log',
    'logging.level' => SimpleSAML\Logger::INFO,
    'secretsalt' => 'rolegate-test-secret-salt',
    'auth.adminpassword' => 'admin-pw',
    'technicalcontact_email' => 'ops@example.test',
    'enable.saml20-idp' => true,
    'module.enable' => ['exampleauth' => true, 'core' => true, 'saml' => true, 'admin' => true],
    'session.cookie.secure' => false,      // plain http on loopback
    'session.cookie.samesite' => null,
    'session.phpsession.savepath' => "$here/sessions",
    'store.type' => 'phpsession',
    'production' => false,
    'timezone' => 'UTC',
    'metadata.sources' => [['type' => 'flatfile']],
]);
