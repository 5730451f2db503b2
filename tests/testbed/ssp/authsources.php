<?php
// Test users with group attributes (passwords are checked for real).
$config = [
    'admin' => ['core:AdminPassword'],
    'example-userpass' => [
        'exampleauth:UserPass',
        'alice:alice-pw' => [
            'uid' => ['alice'],
            'mail' => ['alice@example.test'],
            'displayName' => ['Alice Example'],
            'groups' => ['aws-admins', 'developers'],
            'memberOf' => ['cn=aws-admins,ou=groups,dc=example,dc=test', 'cn=developers,ou=groups,dc=example,dc=test'],
        ],
        'bob:bob-pw' => [
            'uid' => ['bob'],
            'mail' => ['bob@example.test'],
            'displayName' => ['Bob Example'],
            'groups' => ['developers'],
            'memberOf' => ['cn=developers,ou=groups,dc=example,dc=test'],
        ],
    ],
];
